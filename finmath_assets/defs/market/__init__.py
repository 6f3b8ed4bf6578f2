"""The market half (`market/...`): trading-day price partitions, landed card-transaction files
and the weekly forecasters."""
