"""The pure status function and reason codes (the scheduler's sweep arrives with the deployments issue)."""
