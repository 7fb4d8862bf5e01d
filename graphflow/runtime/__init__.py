"""Runtime services handed to nodes: devices now, the model manager with the diffusion pack."""
