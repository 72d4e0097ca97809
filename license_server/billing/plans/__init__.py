"""Plans extended with billing terms, and the catalogue import."""
