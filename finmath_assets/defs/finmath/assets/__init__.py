"""Assets of this domain, one module per stage."""
