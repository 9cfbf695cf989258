"""The dashboard's charts: the one SVG chart stack of :mod:`reports.charts` (inline SVG, no JavaScript)."""

from reports.charts import bar_chart, funnel_plot, histogram, monthly_counts

__all__ = ["bar_chart", "funnel_plot", "histogram", "monthly_counts"]
