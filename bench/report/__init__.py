"""Reports from records: tables, figures, the plateau fit and its statistics, baselines compared, W&B dashboards."""
