"""Reading inputs: the platform inbox (platform/) and regulators' files (regulator/)."""
