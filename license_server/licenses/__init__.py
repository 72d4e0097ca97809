"""Customers, plans (templates of terms), licenses and their keys, and the actions on them."""
