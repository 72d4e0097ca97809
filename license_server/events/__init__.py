"""Domain events, webhook endpoints, and signed deliveries with retries."""
