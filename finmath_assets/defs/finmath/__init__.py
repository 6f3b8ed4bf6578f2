"""The FinanceMath graph (`finmath/...`): raw records to an evaluated, registered answer model,
batch predictions and monitoring reports."""
