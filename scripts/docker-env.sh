#!/usr/bin/env bash
# Writes the secrets docker-compose.yml refuses to start without into an env file (default .env):
# SECRET_KEY, the S3 (MinIO) credentials and the PostgreSQL password, each generated here.
#   bash scripts/docker-env.sh [FILE]     never overwrites an existing file
set -euo pipefail
file="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.env}"
if [ -e "$file" ]; then
    echo "==> $file exists; not overwriting it" >&2
    exit 0
fi
secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
umask 077
postgres_password=$(secret)
cat > "$file" <<ENV
SECRET_KEY=$(secret)
MINIO_ROOT_USER=bannerservice
MINIO_ROOT_PASSWORD=$(secret)
POSTGRES_PASSWORD=$postgres_password
# With --profile postgres, uncomment:
# DATABASE_URL=postgresql://bannerservice:$postgres_password@postgres:5432/bannerservice
ENV
echo "==> wrote $file (keep it secret; back it up with the data)" >&2
