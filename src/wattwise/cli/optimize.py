"""``wattwise optimize``: apply a compression recipe to a trained run, or search for one.

Flags are named after the :class:`~wattwise.optimize.recipe.RecipeSettings` field or run setting
they set (dashes for underscores); older spellings stay as aliases (``--inference-seconds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from wattwise.cli._base import (
    add_meter_options,
    check_writable,
    in_cli_words,
    monitor_config_from_args,
    non_negative_float,
    positive_float,
    positive_int,
    third_party_log,
    write_json,
)
from wattwise.errors import ConfigError, ModelError


def register(subparsers: Any) -> None:
    """Adds ``optimize`` to ``subparsers``."""
    p = subparsers.add_parser(
        "optimize", help="apply a compression recipe to a trained run, or search for one"
    )
    p.add_argument("--checkpoint", required=True, help="a run folder or its checkpoint.pt")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--recipe",
        help='steps, e.g. "prune:structured:0.5,quantize:int8", or a YAML file listing them '
        "(the steps are listed below; their options in docs/optimize.md)",
    )
    what.add_argument(
        "--search",
        action="store_true",
        help="search recipes (pruning ratio, importance, steps, fine-tuning, int8, "
        "channels_last) for the least J/image within --floor accuracy points",
    )
    p.add_argument(
        "--floor",
        type=non_negative_float("--floor"),
        default=1.0,
        metavar="POINTS",
        help="with --search: accuracy points a recipe may lose (default 1)",
    )
    p.add_argument(
        "--budget",
        type=positive_int("--budget"),
        default=20,
        metavar="N",
        help="with --search: candidates to measure (default %(default)s)",
    )
    p.add_argument(
        "--sampler",
        choices=("auto", "tpe", "gp", "nsga2", "level", "grid"),
        default="auto",
        help="with --search: Optuna's constrained TPE or GP, NSGA-II, the compression-level "
        "search of one pruning ratio, or every point of the grid (ratio in steps of 0.1) "
        "(default auto: TPE up to 100 candidates, else NSGA-II)",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="with --search: start the search in --out again instead of continuing it",
    )
    p.add_argument("--data-root", help="data folder (default $WATTWISE_DATA)")
    p.add_argument("--download", action="store_true", help="fetch missing dataset files")
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=2,
        metavar="EPOCHS",
        help="fine-tuning epochs after a prune step (default %(default)s; 0: none)",
    )
    p.add_argument(
        "--finetune-lr",
        type=positive_float("--finetune-lr"),
        default=0.01,
        help="learning rate of that fine-tuning, cosine to 0 (default %(default)s)",
    )
    p.add_argument(
        "--distill-epochs",
        type=positive_int("--distill-epochs"),
        default=5,
        metavar="EPOCHS",
        help="epochs of a distill step's student training (default %(default)s)",
    )
    p.add_argument(
        "--calibration-batches",
        type=positive_int("--calibration-batches"),
        help="calibration batches of every quantize:int8 step (its calibration_batches option; "
        "default 16)",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int("--batch-size"),
        default=64,
        help="images per batch of fine-tuning, calibration and measuring (default %(default)s)",
    )
    p.add_argument(
        "--inference-s",
        "--inference-seconds",
        dest="inference_s",
        type=positive_float("--inference-s"),
        default=3.0,
        metavar="SECONDS",
        help="length of each inference measurement (default 3)",
    )
    p.add_argument(
        "--rounds",
        type=positive_int("--rounds"),
        default=10,
        help="rounds of the interleaved comparison of the variants (default 10; the total "
        "time per variant is --inference-s)",
    )
    p.add_argument(
        "--target-half-width",
        type=positive_float("--target-half-width"),
        default=0.10,
        metavar="FRACTION",
        help="add rounds until every saving is known within x/÷ (1 + FRACTION) (default 0.10)",
    )
    p.add_argument(
        "--max-rounds",
        type=positive_int("--max-rounds"),
        default=30,
        help="never more rounds than this (default 30; equal to --rounds: a fixed count)",
    )
    p.add_argument(
        "--num-threads",
        "--threads",
        dest="num_threads",
        type=positive_int("--num-threads"),
        help="PyTorch CPU threads while measuring (default: PyTorch's; recorded either way)",
    )
    p.add_argument(
        "--device",
        default="cpu",
        help="where the variants are fine-tuned and measured: cpu, cuda or cuda:N (int8 runs "
        "on the CPU) (default %(default)s)",
    )
    p.add_argument(
        "--out",
        help="folder for recipe.json and the final model, model.pt (model.pt2 for int8) "
        "(default: <run>/optimize-<time>), or for search.json and "
        "search.sqlite (default: <run>/search)",
    )
    p.add_argument(
        "--save-steps",
        action="store_true",
        help="also save each step's model in <out>/steps/<n>-<step>/ (as the final model is)",
    )
    p.add_argument(
        "--onnx",
        action="store_true",
        help="also export the final model to <out>/model.onnx and measure it in ONNX Runtime "
        "beside PyTorch (same protocol, same threads; needs wattwise[onnx])",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the comparison, profile each variant's inference with torch.profiler: "
        "top operators with FLOPs, time, memory and estimated energy shares (in recipe.json)",
    )
    add_meter_options(p)
    p.add_help_note("recipe steps (--recipe)", _technique_steps)
    p.set_defaults(func=in_cli_words(cmd_optimize))


def _technique_steps() -> str:
    from wattwise.optimize import list_techniques

    return ", ".join(list_techniques())


def cmd_optimize(args: argparse.Namespace) -> int:
    with third_party_log(args.out or args.checkpoint):  # the run folder without --out
        return _optimize(args)


def _optimize(args: argparse.Namespace) -> int:
    from rich.console import Console

    from wattwise.cli.render import rank_line, variant_line, variants_table
    from wattwise.cli.render_profiles import print_profiles
    from wattwise.data import load_dataset
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.optimize import StaticInt8Config, load_recipe
    from wattwise.optimize.grammar import format_recipe
    from wattwise.optimize.profiles import profile_variants
    from wattwise.optimize.recipe import RecipeSettings, run_recipe
    from wattwise.train import load_checkpoint
    from wattwise.train.device import resolve_device

    if args.profile and args.search:
        raise ConfigError("--profile profiles the variants of a --recipe, not a --search")
    configs = load_recipe(args.recipe) if not args.search else ()
    if args.calibration_batches is not None:  # shorthand for each int8 step's option
        configs = tuple(
            dataclasses.replace(c, calibration_batches=args.calibration_batches)
            if isinstance(c, StaticInt8Config)
            else c
            for c in configs
        )
    settings = RecipeSettings(
        finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr,
        distill_epochs=args.distill_epochs,
        batch_size=args.batch_size,
        inference_s=args.inference_s,
        rounds=args.rounds,
        target_half_width=args.target_half_width,
        max_rounds=args.max_rounds,
        threads=args.num_threads,
        device=args.device,
    )
    resolve_device(args.device)  # what would fail after the data and the model, fails now
    if args.out:
        check_writable(str(Path(args.out) / ("search.json" if args.search else "recipe.json")),
                       "--out")  # fmt: skip
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model()  # a checkpoint that cannot be used fails before the data
    dataset_name = checkpoint.dataset.get("name")
    if not isinstance(dataset_name, str):
        raise ModelError(f"checkpoint {checkpoint.path} does not name its dataset (dataset.name)")
    info = checkpoint.dataset.get("info", {})
    data = load_dataset(
        dataset_name,
        args.data_root,
        image_size=info.get("image_size"),
        seed=int(checkpoint.train_config.get("seed", 0)),
        download=args.download,
    )
    console = Console()
    if args.search:
        return run_search(args, model, data, checkpoint, settings, console)
    console.print(f"[bold]optimize[/bold] {checkpoint.path}: {format_recipe(configs)}")

    def on_variant(variant: Any) -> None:
        console.print(variant_line(variant))

    with (
        EnergyMonitor(monitor_config_from_args(args)) as monitor,
        console.status("starting...") as status,
    ):
        result = run_recipe(
            model,
            data,
            configs,
            settings=settings,
            model_spec=checkpoint.model_spec,
            monitor=monitor,
            on_variant=on_variant,
            on_stage=lambda text: status.update(f"{text}..."),
        )
        if args.profile:  # after the comparison: the profiler is in none of its rounds
            status.update("profiling operators...")
        profiles = profile_variants(result, data, settings, monitor) if args.profile else ()
    console.print(variants_table(result.variants, result.references))
    print_profiles(console, profiles)
    if result.comparison is not None:
        compared = result.comparison
        console.print(f"measured side by side: {compared.method}")
        for variant in result.variants[1:]:
            if variant.saving is not None:
                console.print(f"{variant.step}: {variant.saving.verdict}")
        ranking = rank_line(compared.ranks())
        if ranking is not None:
            console.print(ranking)
        if compared.noisy:
            flagged = [name for name, v in compared.variants.items() if v.noisy]
            console.print(
                f"[yellow]noisy: {len(flagged)} of {len(compared.variants)} variants were "
                "measured while other processes used the CPU or with a large spread (reasons "
                "under the table): rerun on a quiet machine[/yellow]"
            )
    for note in dict.fromkeys(n for v in result.variants for n in v.notes):
        console.print(f"note: {note}")
    out = (
        Path(args.out)
        if args.out
        else checkpoint.path.parent / time.strftime("optimize-%Y%m%d-%H%M%S")
    )
    record = {**result.to_dict(), "model": save_final(result, data, checkpoint, out, console)}
    if profiles:
        record["profiles"] = [profile.to_dict() for profile in profiles]
    if args.save_steps:
        record["step_models"] = save_steps(result, data, checkpoint, out, console)
    if args.onnx:
        with EnergyMonitor(monitor_config_from_args(args)) as monitor:
            record["onnx"] = onnx_final(result, data, settings, out, console, monitor)
    write_json(out / "recipe.json", record)
    console.print(f"results written to {out / 'recipe.json'}")
    return 0


def save_final(result: Any, data: Any, checkpoint: Any, out: Path, console: Any) -> dict[str, Any]:
    """The recipe's final model saved in ``out`` (``model.pt``, or ``model.pt2`` for int8; see
    :mod:`wattwise.optimize.saved_model`), its place printed; the record for ``recipe.json``
    (``{"saved": False, "reason"}`` for a model no format can store: the results still count)."""
    from wattwise.cli.render import escape
    from wattwise.errors import WattwiseError
    from wattwise.optimize.saved_model import example_batch, save_model

    final = result.final
    try:
        saved = save_model(final, out, checkpoint.model_spec, example_batch(final, data))
    except WattwiseError as err:
        console.print(f"[yellow]model not saved: {escape(str(err))}[/yellow]")
        return {"saved": False, "reason": str(err)}
    console.print(f"model saved to {escape(str(saved.path))}", soft_wrap=True, highlight=False)
    console.print(f"  {escape(saved.contents)}", soft_wrap=True, highlight=False)
    return {"saved": True, **saved.to_dict()}


def save_steps(
    result: Any, data: Any, checkpoint: Any, out: Path, console: Any
) -> list[dict[str, Any]]:
    """``--save-steps``: every variant's model (the baseline first) saved as the final one is,
    in ``out/steps/<n>-<step>/``; one record per variant for ``recipe.json``."""
    import re

    from wattwise.errors import WattwiseError
    from wattwise.optimize.saved_model import example_batch, save_model

    saved = []
    for n, (variant, prepared) in enumerate(zip(result.variants, result.models, strict=True)):
        folder = out / "steps" / f"{n}-{re.sub(r'[^A-Za-z0-9_.=-]+', '_', variant.step)}"
        example = example_batch(prepared, data)
        try:
            model = save_model(prepared, folder, checkpoint.model_spec, example)
        except WattwiseError as err:
            saved.append({"step": variant.step, "saved": False, "reason": str(err)})
            continue
        saved.append({"step": variant.step, "saved": True, **model.to_dict()})
    console.print(
        f"{sum(s['saved'] for s in saved)} of {len(saved)} step models saved in {out / 'steps'}",
        soft_wrap=True,
        highlight=False,
    )
    return saved


def onnx_final(
    result: Any, data: Any, settings: Any, out: Path, console: Any, monitor: Any
) -> dict[str, Any]:
    """``--onnx``: the final model exported to ``out/model.onnx`` and measured in ONNX Runtime
    beside PyTorch (:mod:`wattwise.optimize.onnx_export`); the record for ``recipe.json``
    (``{"exported": False, "reason"}`` when the exporter cannot: the results still count)."""
    from wattwise.cli.render import escape
    from wattwise.errors import WattwiseError
    from wattwise.optimize.onnx_export import export_onnx, onnx_beside_pytorch
    from wattwise.train.inference import inference_batch

    final = result.final
    batch = inference_batch(data, getattr(final.module, "batch_size", None) or settings.batch_size)
    try:
        with console.status("exporting to ONNX (torch.onnx, dynamo exporter)..."):
            export = export_onnx(final, out / "model.onnx", batch)
        console.print(f"ONNX model saved to {escape(str(export.path))}", soft_wrap=True)
        console.print(f"  {escape(export.contents)}", soft_wrap=True, highlight=False)
        with console.status("measuring ONNX Runtime beside PyTorch..."):
            compared = onnx_beside_pytorch(
                final,
                export,
                batch,
                settings=settings.compare_settings(),
                monitor=monitor,
                measure=settings.inference_s > 0,
            )
    except WattwiseError as err:
        console.print(f"[yellow]ONNX: {escape(str(err))}[/yellow]")
        return {"exported": False, "reason": str(err)}
    console.print(
        f"ONNX Runtime agrees with PyTorch: top-1 {compared.top1_agreement:.1%} of "
        f"{batch.shape[0]} images, logits within {compared.max_abs_diff:.2g}",
        highlight=False,
        soft_wrap=True,
    )
    ratio = compared.saving()
    if ratio is not None:
        stats = compared.comparison.variants
        console.print(
            f"latency p50: ONNX Runtime {stats['onnxruntime'].latency_p50_ms:.3g} ms, "
            f"PyTorch {stats['pytorch'].latency_p50_ms:.3g} ms per batch; "
            f"ONNX Runtime vs PyTorch: {ratio.verdict}",
            highlight=False,
            soft_wrap=True,
        )
        if compared.comparison.noisy:
            console.print(
                "[yellow]noisy: "
                + escape("; ".join(compared.comparison.noise))
                + ": rerun on a quiet machine[/yellow]",
                soft_wrap=True,
            )
    return {"exported": True, **compared.to_dict()}


def run_search(
    args: argparse.Namespace,
    model: Any,
    data: Any,
    checkpoint: Any,
    settings: Any,
    console: Any,
) -> int:
    """``optimize --search``: the recipe search (:mod:`wattwise.optimize.recipe_search`) in
    ``<out>/search.sqlite`` (default ``<run>/search``; running it again continues it,
    ``--no-resume`` starts it again), each candidate printed as it is measured, then the table
    of all candidates, the chosen recipe and the energy the search spent; ``search.json``."""
    from wattwise.cli.render import candidate_line, candidates_table, escape
    from wattwise.energy.monitor import EnergyMonitor
    from wattwise.optimize.recipe_search import search_recipes
    from wattwise.recipe_space import RecipeSearchSettings

    out = Path(args.out) if args.out else checkpoint.path.parent / "search"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create --out {out}: {err.strerror or err}") from err
    search = RecipeSearchSettings(budget=args.budget, floor_points=args.floor, sampler=args.sampler)
    console.print(
        f"[bold]optimize --search[/bold] {escape(str(checkpoint.path))}: {args.budget} "
        f"candidate(s), floor {args.floor:g} point(s), sampler {args.sampler}; "
        f"search in {escape(str(out / 'search.sqlite'))}"
    )

    def on_candidate(c: Any, index: int, budget: int) -> None:
        console.print(f"[{index}/{budget}] {candidate_line(c)}", highlight=False)

    with EnergyMonitor(monitor_config_from_args(args)) as monitor:
        result = search_recipes(
            model,
            data,
            settings=search,
            recipe_settings=settings,
            model_spec=checkpoint.model_spec,
            storage=out / "search.sqlite",
            monitor=monitor,
            on_candidate=on_candidate,
            resume=not args.no_resume,
        )
    console.print(candidates_table(result))
    console.print(escape(result.message), highlight=False)
    write_json(out / "search.json", result.to_dict())
    console.print(f"results written to {escape(str(out / 'search.json'))}")
    return 0
