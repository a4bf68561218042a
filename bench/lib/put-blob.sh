#!/usr/bin/env bash
# bench/lib/put-blob.sh HOST:PORT REPO FILE: uploads FILE as one blob with the
# simplest client there is: a POST for a session, then one `curl -T` PUT of
# the whole file with its digest (distribution-spec "POST then PUT"). Used as
# the ceiling of what any client can get out of a registry for one blob.
set -euo pipefail
reg=$1 repo=$2 file=$3
digest=sha256:$(basename "$file")
location=$(curl -sf -D - -o /dev/null -X POST "http://$reg/v2/$repo/blobs/uploads/" |
    tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
case $location in http*) ;; *) location=http://$reg$location ;; esac
case $location in *\?*) sep='&' ;; *) sep='?' ;; esac
curl -sf -o /dev/null -T "$file" -H 'Content-Type: application/octet-stream' \
    "$location${sep}digest=$digest"
