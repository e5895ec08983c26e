"""Small helpers shared by the package: atomic writes, seeding, devices."""
