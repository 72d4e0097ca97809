"""The subscription lifecycle: the status rule, plan changes with proration, renewals, and their events."""
