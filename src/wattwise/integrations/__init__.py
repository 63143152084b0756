"""Where wattwise meets the tools people already use: training-framework callbacks and
experiment trackers. Each integration is its own module and imports its framework only when
used (the extras ``wattwise[lightning]``, ``wattwise[transformers]``, ``wattwise[mlflow]``)."""
