"""Issuing keys and the one signer (servers); the offline root that certifies them and signs revocation lists
(the key host, ``signing.root``); revocation lists shared through the database."""
