"""Operator commands beside the daemon (``bridge redrive``) and what the command-line tools share."""
