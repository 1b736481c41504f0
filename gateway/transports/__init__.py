"""Transports: where frames come from and downlinks go (serial bridge, BLE, simulator)."""
