"""The ladder: every way of answering (a rung) behind one interface, compared on one golden suite."""
