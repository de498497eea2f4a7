"""Online evaluation, A/B reports and the closed-loop simulation: learning from what was served."""
