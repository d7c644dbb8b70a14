"""`puyu quickstart`: the synthetic default world and the whole chain as cached stages."""
