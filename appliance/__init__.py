"""Threshold-signing appliance: a cluster of nodes that hold one secp256k1 ECDSA key."""

__version__ = "0.1.0"
