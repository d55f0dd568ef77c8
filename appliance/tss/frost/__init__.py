"""FROST threshold Schnorr (RFC 9591) for BIP340/Taproot and Ed25519: the protocol core.

Modules (each docstring lists its checks, numbered as the errors name them):

- ``groups.py``   Ed25519 (libsodium via PyNaCl) and secp256k1 (libsecp256k1 via coincurve):
                  RFC 9591's Group interface with strict deserialization.
- ``suites.py``   FROST(Ed25519, SHA-512), FROST(secp256k1, SHA-256) and the Taproot variant
                  (frost-secp256k1-tr): H1..H5, the challenge, even-Y hooks, signature encoding.
- ``taproot.py``  BIP340 tagged hashes and verification, the BIP341 key-path tweak of shares.
- ``core.py``     RFC 9591 §4-§5: nonce_generate, commit, binding factors, group commitment,
                  challenge, sign, verify_signature_share, aggregate, verify.
- ``keyshare.py`` ``FrostKeyShare``: sk_i, identifiers, verification shares, PK.
- ``dkg.py``      the FROST paper's DKG (Feldman + proof of knowledge) as a ``Party`` protocol.
- ``sign.py``     single-use nonces, the signer's checks of a coordinator's package, the
                  coordinator's identifiable aggregation, the two-round ``Party`` protocol.
- ``pooled.py``   round one ahead of time: identity-signed pooled commitments (check 7) and
                  the one-online-round ``FrostPooledSignParty``.
- ``refresh.py``  zero-sharing refresh: every share and verification share changes, PK stays.
- ``reshare.py``  (t, n) to (t', n') over a new committee, same PK, new members confirm.
- ``bip32.py``    BIP32 non-hardened derivation of schnorr-bip340 keys (ed25519 refused).
- ``dealer.py``   key import: a BIP340 secret key or an Ed25519 seed split with Feldman
                  commitments in the scheme's group; the receiving node's checks of its share.
- ``simulate.py`` ``keygen``, ``sign(shares, message, merkle_root=None, derivation=None)``,
                  ``refresh``, ``reshare``.

Schemes: ``schnorr-bip340`` (the Taproot ciphersuite), ``ed25519``, ``frost-secp256k1`` (the
RFC's plain secp256k1 suite, for its vectors; no chain verifies its 65-byte signatures).
Through the nodes: keygen and signing jobs (appliance/keys/key_jobs.py, appliance/signing/),
refresh and reshare as two-phase key changes, BIP32 children of ``schnorr-bip340`` keys with a
chain code made from the DKG's result (``appliance/keys/frost_keys.chain_code``; ``bip32.py``
takes it as an argument), the HSM-sealed nonce pool that feeds ``pooled.py``
(appliance/pools/frost_nonces.py), and import of a known key (``dealer.py``,
``appliance/key_import.py``; an imported ``schnorr-bip340`` key's chain code is the bundle's).
"""
