"""Root and issuing Ed25519 keys, encryption at rest, rotation, certificates, JWKS and the one signer."""
