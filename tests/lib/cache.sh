# shellcheck shell=bash
# Shared by guest/build-default and tests/sandbox/run: where the vireo cache
# lives and which Debian kernel package a cached build comes from.
# Source it; it defines functions only and changes no shell options.

# The cache directory: $VIREO_CACHE, else $XDG_CACHE_HOME/vireo, else
# ~/.cache/vireo.
vireo_cache_dir() {
    printf '%s\n' "${VIREO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vireo}"
}

# vireo_require TOOL PACKAGE: fail with a message naming the Debian package
# when TOOL is not on PATH (or, for an absolute path, not executable).
vireo_require() {
    if [[ $1 == /* ]]; then
        [[ -x $1 ]] && return 0
    elif command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    printf '%s: %s not found: install the Debian package %s (apt-get install %s)\n' \
        "${0##*/}" "$1" "$2" "$2" >&2
    return 1
}

# vireo_kernel_package META: print "PACKAGE VERSION" for the versioned kernel
# image package that the Debian meta package META (linux-image-amd64,
# linux-image-cloud-amd64) depends on, e.g.
#   linux-image-6.1.0-56-cloud-amd64 6.1.192-2
# apt-cache is slow (about 0.5 s), so the answer is remembered in the cache
# directory until apt's package lists or sources change.
vireo_kernel_package() {
    local meta=$1 memo fp line answer
    memo="$(vireo_cache_dir)/.apt-${meta}"
    fp=$(stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* /etc/apt/sources.list \
        /etc/apt/sources.list.d/* /etc/apt/preferences.d/* 2>/dev/null | cksum)
    if [[ -r $memo ]]; then
        {
            IFS= read -r line
            IFS= read -r answer
        } <"$memo"
        if [[ $line == "$fp" && -n $answer ]]; then
            printf '%s\n' "$answer"
            return 0
        fi
    fi
    # "Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)"
    line=$(apt-cache show --no-all-versions "$meta" 2>/dev/null |
        sed -n 's/^Depends:.*\(linux-image-[0-9][^ ,]*\) *(= *\([^) ]*\)).*/\1 \2/p' | head -n 1)
    if [[ -z $line ]]; then
        # Fall back to apt-cache depends plus the candidate version.
        line=$(apt-cache depends "$meta" 2>/dev/null |
            sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n 1)
        [[ -n $line ]] || return 1
        answer=$(apt-cache show --no-all-versions "$line" 2>/dev/null |
            sed -n 's/^Version: *//p' | head -n 1)
        line="$line ${answer:-unknown}"
    fi
    if mkdir -p "${memo%/*}" 2>/dev/null; then
        printf '%s\n%s\n' "$fp" "$line" >"$memo.$$" && mv -f "$memo.$$" "$memo"
    fi
    printf '%s\n' "$line"
}

# vireo_replace_dir NEW DEST: put the finished directory NEW in place of
# DEST (both in the same file system).  DEST is at no moment half built: it
# is either the old complete tree, absent for an instant, or the new one.
vireo_replace_dir() {
    local new=$1 dest=$2 old
    old="$dest.old.$$"
    if [[ -e $dest ]]; then
        mv -T -- "$dest" "$old" || return 1
    fi
    if ! mv -T -- "$new" "$dest"; then
        [[ -e $old ]] && mv -T -- "$old" "$dest"
        return 1
    fi
    rm -rf -- "$old"
}
