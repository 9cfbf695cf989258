"""Tables written by one step each: the signal register and the alert outbox."""
