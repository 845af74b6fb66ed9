"""Data: paired datalists (read and check), Mayo/TCIA pairing, simulated pairs from full dose, the embedded default dataset."""
