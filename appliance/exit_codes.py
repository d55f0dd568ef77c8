"""The CLI's exit codes (the DESIGN.md contract): 0 ok, 2 usage, 3 refused by policy or auth,
4 not found, 5 timeout, 6 unreachable, 7 verification failed."""

EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_NOT_FOUND, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_VERIFICATION_FAILED = (
    0, 2, 3, 4, 5, 6, 7)
