"""Training: configs and recipes, the task contract, the epoch loop, run directories."""
