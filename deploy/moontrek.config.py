# moontrek configuration for the replicas of deploy/docker-compose.yml,
# mounted at /app/config/config.py in each. deploy/local.py reads it too,
# and replaces the addresses with loopback ones.
CONFIG = {
    "log_filepath": "/app/data/moontrek.log",
    "host": "0.0.0.0",
    "port": 80,
    # One budget per client, shared by every replica through Redis.
    "default_rate_limits": ["20 per day"],
    "rate_limit_storage_uri": "redis://redis:6379/0",
    "rate_limit_strategy": "moving-window",
    # Redis down: keep serving, unlimited, and log the outage once.
    "rate_limit_fail_open": True,
    # The backend network of docker-compose.yml. Only nginx reaches the
    # replicas there (no port of theirs is published), so the addresses it
    # appends to X-Forwarded-For are believed, and only those.
    "trusted_proxies": ["172.28.1.0/24"],
    # One process per replica: scale with replicas (docker compose --scale),
    # or set workers (Linux) to use several cores in each. Each replica also
    # runs our SURF on "surf_processes" worker processes (default: the
    # host's cores, about 60 MB each); with many replicas on one host, fewer.
    "workers": 1,
}
