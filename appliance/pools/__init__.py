"""Pools filled in the background: presignatures (per key and signer set) and safe primes."""
