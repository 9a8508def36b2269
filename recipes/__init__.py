"""Reviewed compatibility data shipped inside the wheel as envcheck._recipes (see README.md here)."""
