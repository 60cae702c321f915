"""Resources: one module per API area, sync and async classes side by side."""
