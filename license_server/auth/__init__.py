"""Admin tokens, roles and their permissions, route guards, secret hashing and the audit log."""
