"""Training: optimizer, train state, the jitted step, and the loop with checkpoints."""
