#!/bin/sh
# Creates a user's home directory on shared storage, owned by the user, mode
# 0700, and does nothing when it already exists. It is the entrypoint of the
# provisioning init container unroot injects; unroot sets the environment:
#   UNROOT_USER    user name (for messages)
#   UNROOT_UID     numeric user id
#   UNROOT_GID     numeric primary group id
#   UNROOT_HOME    absolute path of the home directory
#   UNROOT_GROUPS  supplementary groups, name:gid,... (unused here)
# It runs as uid 0 with only CHOWN, DAC_OVERRIDE and FOWNER, so it creates,
# chowns and chmods, and nothing else.
set -eu

fail() {
    echo "provision: $*" >&2
    exit 1
}

for var in UNROOT_USER UNROOT_UID UNROOT_GID UNROOT_HOME; do
    eval "value=\${$var:-}"
    [ -n "$value" ] || fail "$var is not set; run this as unroot's provisioning init container"
done

case $UNROOT_UID in
    '' | *[!0-9]*) fail "UNROOT_UID=$UNROOT_UID is not a number" ;;
esac
case $UNROOT_GID in
    '' | *[!0-9]*) fail "UNROOT_GID=$UNROOT_GID is not a number" ;;
esac
[ "$UNROOT_UID" -ne 0 ] || fail "refusing to provision a home for uid 0"
case $UNROOT_HOME in
    /*) ;;
    *) fail "UNROOT_HOME=$UNROOT_HOME is not an absolute path" ;;
esac
case /$UNROOT_HOME/ in
    */../* | */./*) fail "UNROOT_HOME=$UNROOT_HOME contains . or .. components" ;;
esac

# An existing home (or anything else at that path) belongs to its owner:
# never chown or chmod it again, never follow a symlink planted there.
if [ -e "$UNROOT_HOME" ] || [ -L "$UNROOT_HOME" ]; then
    echo "provision: $UNROOT_HOME exists; leaving it as it is"
    exit 0
fi

parent=$(dirname -- "$UNROOT_HOME")
[ -d "$parent" ] || fail "$parent does not exist: is the home volume mounted there?"

# mkdir without -p: creating only the last component means a concurrent
# creator makes us fail loudly instead of racing on ownership.
(umask 077 && mkdir -- "$UNROOT_HOME") || fail "cannot create $UNROOT_HOME"
chown "$UNROOT_UID:$UNROOT_GID" "$UNROOT_HOME" || fail "cannot chown $UNROOT_HOME to $UNROOT_UID:$UNROOT_GID"
chmod 0700 "$UNROOT_HOME" || fail "cannot chmod $UNROOT_HOME"
echo "provision: created $UNROOT_HOME for $UNROOT_USER ($UNROOT_UID:$UNROOT_GID), mode 0700"
