"""demo_pkg's tests use luaimport's pytest plugin, enabled as any user enables it."""

pytest_plugins = ["luaimport.pytest_plugin"]
