"""Demo package for luaimport: Redis Lua modules that call each other.

``counters.lua``, ``ratelimit.lua``, ``queue.lua`` and ``slide.lua`` become
``demo_pkg.counters`` and so on once ``luaimport.install()`` has run (this
package does not call it; ``python -m demo_pkg`` does, then runs a short
scenario against ``$REDIS_URL`` or an embedded Valkey).
"""
