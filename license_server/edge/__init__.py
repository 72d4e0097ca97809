"""The edge: an air-gapped install's local license server, serving one verified license file."""
