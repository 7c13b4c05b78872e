"""Records of a run, their JSON form, and the views of them (terminal/Markdown tables, compare)."""
