"""Zero-knowledge proofs of CGGMP (2024 revision), one module per proof.

Conventions every module follows (see ``enc_elg`` and ``sch`` for the pattern):

- The module docstring names the figure, lists the public inputs, the witness, the prover's
  steps in the paper's notation, and every check the verifier makes, numbered from 1.
- ``XxxPublic`` / ``XxxWitness`` / ``XxxProof`` are frozen dataclasses; a proof holds the
  prover's commitments and responses (the challenge is recomputed, never sent).
- ``prove(ctx, pub, wit, setup, params, rng, ...) -> XxxProof`` and
  ``verify(ctx, pub, proof, setup, params, ...) -> None``; ``verify`` raises
  ``ProofError(message, check=n)`` on the first failed check (``.check`` is its number in
  the docstring, and the message starts "check n: ") and returns None when all pass.
  ``prove`` refuses a false statement or a witness outside its range with
  ``ParameterError``: that is the caller's mistake, not a failed proof.
- ``ctx: ProofContext`` (session id, prover index, rid) starts every transcript; each
  module has its own ``DOMAIN`` label; every public input and every commitment is appended
  before the challenge.
- Every proof field is checked against its canonical range (``_checks``) before use.
- Secret exponents use ``powmod_sec`` (``pow_sec``, ``pow_sec_signed``,
  ``RingPedersenParams.commit``); the prover may use CRT on its own Paillier key; the
  verifier may use CRT on its own ring-Pedersen parameters (``rp_commit_public``).
"""
