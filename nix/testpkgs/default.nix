# nixport's offline test package set: plain Nix, no nixpkgs, no network.
#
# It is called like nixpkgs (`import ./. { system = "x86_64-linux"; }`) and
# returns an attribute set of packages. Every derivation is built by the
# host's /bin/sh with PATH=/usr/bin:/bin, from one input: the host's static
# busybox (Debian busybox-static), imported with builtins.path so that it is
# content-addressed. Images made from these packages really run (unpack the
# layers, `chroot DIR /bin/hello`). Debian's busybox is not "standalone":
# scripts call applets by store path (`${busybox}/bin/cat`).
#
# What tests and benchmarks find here:
#   busybox            bin/busybox and a symlink per applet (no references)
#   hello              bin/hello prints exactly "Hello, world!";
#                      hello -> greeting -> busybox (closure depth 3)
#   meta and versions  for SBOM tests: hello (2.12.1) and greeting (1.0)
#                      have pname and version in their derivations, as
#                      nixpkgs' do (their store names stay unversioned);
#                      hello, busybox, multi, nano, cacert and iana-etc
#                      carry meta (description, homepage, license: one
#                      SPDX license, a list of two, one without an SPDX
#                      id, an old-style string)
#   deep               deep -> chain.c3 -> chain.c2 -> chain.c1 -> busybox
#   xorg.xev           a nested attribute (xev -> xorg.libX11)
#   haskellPackages.*  a camelCase top-level attribute holding packages
#   CoinMP, coinmp     two top-level names differing only in case, as in
#                      nixpkgs: exact match wins, else the smallest name
#   multi              outputs out, bin, dev; meta.outputsToInstall = [ "bin" ];
#                      bin and dev reference out
#   bashInteractive, coreutils, moreutils, nano
#                      the members of the `shell` meta-package (bin/bash,
#                      bin/sh, bin/ls..., bin/sponge and bin/ts, bin/nano)
#   cacert             etc/ssl/certs/ca-bundle.crt (a stand-in, no real CA)
#   iana-etc           etc/protocols, etc/services (stand-ins)
#   broken             its builder fails (exit 1) with a known message
#   slow               its builder sleeps 600 s: for timeout tests
#   pause              its builder sleeps 4 s, then succeeds (bin/paused):
#                      for builds that outlive their clients
#   unfree, markedBroken
#                      refused the way nixpkgs' check-meta refuses an unfree
#                      or broken package: evaluating them throws
#   small.s01..s64     tiny independent packages: benchmarks of N packages
#   big.p01..p40       large generated packages (26 MB / i each, 111 MB in
#                      all) whose content compresses about 3x like binaries
#   bigclosure         references every big.p*: one name, 42 paths, 111+ MB
#
# The set only holds host binaries, so it builds for the host's system only:
# asking for another system (the `arm64` meta-package on an x86_64 machine)
# fails evaluation with a clear message instead of labelling x86 binaries as
# aarch64 ones.
{ system ? builtins.currentSystem, ... }:

let
  hostSystem = builtins.currentSystem;

  busyboxFile =
    if builtins.pathExists /bin/busybox
    then builtins.path { path = /bin/busybox; name = "busybox-static"; }
    else throw "nixport test packages need a static busybox at /bin/busybox (Debian package busybox-static)";

  # mk makes a derivation from:
  #   files: shell path ("$out/bin/x", "$bin/...") -> text; files under a
  #          bin/ directory are executable
  #   links: shell path -> symlink target
  #   script: extra shell commands, run after files and links
  #   tools: where the builder finds mkdir, printf, chmod, ln: busybox's
  #          applets, or the host's (PATH) for busybox itself
  #   version: set, the derivation also has pname (= name) and version,
  #          as nixpkgs' mkDerivation gives them (the store name is still
  #          name: tests know the closures by those names)
  mk = { name, version ? null, outputs ? [ "out" ], files ? { }, links ? { }, script ? "", meta ? { }, env ? { }, passthru ? { }, tools ? "${busybox}/bin/" }:
    if system != hostSystem then
      throw "nixport test packages cannot build ${name} for ${system} on this ${hostSystem} machine: the set is made of the host's own binaries"
    else
      let
        fileNames = builtins.attrNames files;
        linkNames = builtins.attrNames links;
        fileEnv = builtins.listToAttrs (builtins.genList
          (i: { name = "nixportFile${toString i}"; value = files.${builtins.elemAt fileNames i}; })
          (builtins.length fileNames));
        writeFile = i:
          let p = builtins.elemAt fileNames i; in ''
            ${tools}mkdir -p "${builtins.dirOf p}"
            ${tools}printf '%s' "$nixportFile${toString i}" > "${p}"
            ${tools}chmod ${if builtins.match "(.*/)?bin/[^/]*" p != null then "0555" else "0444"} "${p}"
          '';
        writeLink = p: ''
          ${tools}mkdir -p "${builtins.dirOf p}"
          ${tools}ln -s "${links.${p}}" "${p}"
        '';
        versionEnv = if version == null then { } else { pname = name; inherit version; };
        drv = derivation (env // fileEnv // versionEnv // {
          inherit name system outputs;
          builder = "/bin/sh";
          PATH = "/usr/bin:/bin";
          args = [ "-e" "-c" ''
            ${builtins.concatStringsSep "" (builtins.genList writeFile (builtins.length fileNames))}
            ${builtins.concatStringsSep "" (map writeLink linkNames)}
            ${script}
            for o in ${builtins.concatStringsSep " " outputs}; do
              eval "d=\$$o"
              ${tools}mkdir -p "$d"
            done
          '' ];
        });
      in
      drv // { inherit meta; } // passthru;

  pad2 = n: if n < 10 then "0${toString n}" else toString n;

  # A script with a busybox shebang: referencing busybox gives closures depth.
  sh = text: "#!${busybox}/bin/sh\n" + text;

  # The only derivation built with host tools (from PATH): busybox decides
  # which applet to run from its file name, so it must be copied to a file
  # named busybox before it can run.
  licenses = {
    mit = { spdxId = "MIT"; shortName = "mit"; fullName = "MIT License"; };
    asl20 = { spdxId = "Apache-2.0"; shortName = "asl20"; fullName = "Apache License 2.0"; };
    gpl2Only = { spdxId = "GPL-2.0-only"; shortName = "gpl2Only"; fullName = "GNU General Public License v2.0 only"; };
    mpl20 = { spdxId = "MPL-2.0"; shortName = "mpl20"; fullName = "Mozilla Public License 2.0"; };
    # nixpkgs has licenses without an SPDX identifier (unfree ones, say).
    custom = { shortName = "nixport-test-custom"; fullName = "A licence with no SPDX identifier"; };
  };

  busybox = mk {
    name = "busybox";
    meta = {
      description = "Tiny versions of common UNIX utilities in a single small executable";
      homepage = "https://busybox.net/";
      license = licenses.gpl2Only;
    };
    tools = "";
    script = ''
      mkdir -p $out/bin
      cp ${busyboxFile} $out/bin/busybox
      chmod 0555 $out/bin/busybox
      for a in $($out/bin/busybox --list); do
        if [ "$a" != busybox ]; then $out/bin/busybox ln -s busybox "$out/bin/$a"; fi
      done
    '';
  };

  greeting = mk {
    name = "greeting";
    version = "1.0";
    files."$out/share/greeting/message" = "Hello, world!\n";
    files."$out/bin/greet" = sh "exec ${busybox}/bin/cat \"$(${busybox}/bin/dirname \"$0\")/../share/greeting/message\"\n";
  };

  hello = mk {
    name = "hello";
    version = "2.12.1";
    meta = {
      description = "A program that produces a familiar, friendly greeting";
      homepage = "https://www.gnu.org/software/hello/manual/";
      license = licenses.mit;
    };
    files."$out/bin/hello" = sh "exec ${busybox}/bin/cat ${greeting}/share/greeting/message\n";
  };

  chain = rec {
    c1 = mk { name = "chain-c1"; files."$out/bin/c1" = sh "${busybox}/bin/echo c1\n"; };
    c2 = mk { name = "chain-c2"; files."$out/bin/c2" = sh "${c1}/bin/c1; ${busybox}/bin/echo c2\n"; };
    c3 = mk { name = "chain-c3"; files."$out/bin/c3" = sh "${c2}/bin/c2; ${busybox}/bin/echo c3\n"; };
  };

  deep = mk { name = "deep"; files."$out/bin/deep" = sh "${chain.c3}/bin/c3; ${busybox}/bin/echo deep\n"; };

  xorg = rec {
    libX11 = mk { name = "libX11"; files."$out/lib/libX11.txt" = "a stand-in for libX11\n"; };
    xev = mk { name = "xev"; files."$out/bin/xev" = sh "exec ${busybox}/bin/cat ${libX11}/lib/libX11.txt\n"; };
  };

  haskellPackages = {
    hello = mk { name = "haskell-hello"; files."$out/bin/haskell-hello" = sh "${busybox}/bin/echo 'Hello from Haskell (a stand-in)'\n"; };
    pandoc = mk { name = "pandoc"; files."$out/bin/pandoc" = sh "exec ${busybox}/bin/cat \"$@\"\n"; };
  };

  multi = mk {
    name = "multi";
    outputs = [ "out" "bin" "dev" ];
    files."$out/share/multi/data" = "multi's data\n";
    files."$bin/bin/multi" = sh "exec ${busybox}/bin/cat ${builtins.placeholder "out"}/share/multi/data\n";
    files."$dev/include/multi.h" = "/* see ${builtins.placeholder "out"}/share/multi/data */\n";
    meta = {
      outputsToInstall = [ "bin" ];
      description = "A package of three outputs";
      homepage = "https://example.org/multi";
      license = [ licenses.mit licenses.asl20 ];
    };
  };

  coreutilsApplets = [
    "basename" "cat" "chmod" "chown" "cp" "cut" "date" "dd" "df" "dirname" "du" "echo" "env" "false" "head"
    "id" "ln" "ls" "md5sum" "mkdir" "mktemp" "mv" "printf" "pwd" "readlink" "rm" "rmdir" "seq" "sha256sum"
    "sleep" "sort" "stat" "tail" "tee" "test" "touch" "tr" "true" "uname" "uniq" "wc" "whoami" "yes"
  ];

  bashInteractive = mk {
    name = "bash-interactive";
    files."$out/bin/bash" = sh "exec ${busybox}/bin/sh \"$@\"\n";
    links."$out/bin/sh" = "${busybox}/bin/sh";
  };

  coreutils = mk {
    name = "coreutils";
    links = builtins.listToAttrs (map (a: { name = "$out/bin/${a}"; value = "${busybox}/bin/${a}"; }) coreutilsApplets);
  };

  moreutils = mk {
    name = "moreutils";
    files."$out/bin/sponge" = sh ''
      t=$(${busybox}/bin/mktemp) || exit 1
      ${busybox}/bin/cat > "$t" && if [ $# -gt 0 ]; then ${busybox}/bin/cat "$t" > "$1"; else ${busybox}/bin/cat "$t"; fi
      s=$?; ${busybox}/bin/rm -f "$t"; exit $s
    '';
    links."$out/bin/ts" = "${busybox}/bin/ts";
  };

  nano = mk {
    name = "nano";
    meta.license = licenses.custom;
    files."$out/bin/nano" = sh "exec ${busybox}/bin/vi \"$@\"\n";
  };

  cacert = mk {
    name = "nss-cacert";
    meta = { description = "A stand-in for the Mozilla CA bundle"; license = licenses.mpl20; };
    files."$out/etc/ssl/certs/ca-bundle.crt" = ''
      # nixport test CA bundle: a stand-in for nixpkgs' cacert.
      # It holds no certificate; it only has nixpkgs' file layout.
    '';
    links."$out/etc/ssl/certs/ca-certificates.crt" = "ca-bundle.crt";
  };

  iana-etc = mk {
    name = "iana-etc";
    meta.license = "free"; # an old-style plain string
    files."$out/etc/protocols" = ''
      # a stand-in for iana-etc's protocols
      ip	0	IP
      icmp	1	ICMP
      tcp	6	TCP
      udp	17	UDP
    '';
    files."$out/etc/services" = ''
      # a stand-in for iana-etc's services
      ssh		22/tcp
      domain		53/tcp
      domain		53/udp
      http		80/tcp
      https		443/tcp
    '';
  };

  broken = mk {
    name = "broken";
    script = ''
      echo "nixport test package: this build fails on purpose" >&2
      exit 1
    '';
  };

  pause = mk {
    name = "pause";
    files."$out/bin/paused" = sh "${busybox}/bin/echo paused\n";
    script = ''
      # nixport-pause-build
      ${busybox}/bin/sleep 4
    '';
  };

  slow = mk {
    name = "slow";
    script = ''
      # nixport-slow-build: tests look for this marker among processes
      ${busybox}/bin/sleep 600
    '';
  };

  # What nixpkgs' check-meta does with a package its configuration does not
  # allow: the attribute is a derivation, but its drvPath and outPath throw,
  # naming the package and why, then how to allow it.
  refused = name: why:
    let
      msg = "Package ‘${name}-1.0’ in testpkgs/default.nix:1 ${why}, refusing to evaluate.\n\n"
        + "a) To temporarily allow it, set an environment variable (a stand-in for nixpkgs' advice).\n";
    in
    mk { inherit name; } // { drvPath = throw msg; outPath = throw msg; };

  unfree = refused "unfree" "has an unfree license (‘unfree’)";
  markedBroken = refused "marked-broken" "is marked as broken";

  small = builtins.listToAttrs (builtins.genList
    (i:
      let n = "s${pad2 (i + 1)}"; in {
        name = n;
        value = mk {
          name = "small-${n}";
          files."$out/bin/${n}" = sh "${busybox}/bin/echo ${n}\n";
          files."$out/share/${n}/README" = "small test package ${n}\n";
        };
      })
    64);

  # Big packages: p_i is ceil(26 MiB / i) long, made of 64 KiB blocks of
  # busybox itself (compresses about 1.9x) and of a hex dump of it (about
  # 4.5x) in a 1:3 mix: 2.5-2.9x with gzip -6, like real binaries. Every block
  # starts at a package-specific offset, so no two packages are alike.
  big = builtins.listToAttrs (builtins.genList
    (i:
      let
        n = i + 1;
        name = "p${pad2 n}";
        size = (26 * 1048576 + n - 1) / n;
      in {
        inherit name;
        value = mk {
          name = "big-${name}";
          files."$out/share/big/${name}/README" = "generated test package big.${name}: ${toString size} bytes of binary-like data\n";
          script = ''
            bb=${busybox}/bin
            d=$out/lib/big-${name}
            $bb/mkdir -p $d
            total=$($bb/stat -c %s $bb/busybox)
            blocks=$(( (${toString size} + 65535) / 65536 ))
            k=0
            while [ $k -lt $blocks ]; do
              off=$(( ((${toString n} * 7919 + $k * 104729) * 64) % (total - 65536) ))
              if [ $((k % 8)) -lt 2 ]; then
                $bb/dd if=$bb/busybox bs=64 skip=$((off / 64)) count=1024 2>/dev/null
              else
                $bb/od -v -A x -t x1 -j $off -N 20000 $bb/busybox | $bb/head -c 65536
              fi
              k=$((k + 1))
            done | $bb/head -c ${toString size} > $d/data.bin
            $bb/ln -s $bb/busybox $d/busybox
          '';
        };
      })
    40);

  bigclosure = mk {
    name = "bigclosure";
    links = builtins.listToAttrs (map (p: { name = "$out/lib/${p}"; value = "${big.${p}}"; }) (builtins.attrNames big));
  };

in
{
  inherit busybox greeting hello chain deep xorg haskellPackages multi
    bashInteractive coreutils moreutils nano cacert iana-etc broken slow pause
    unfree markedBroken small big bigclosure;

  # Names differing only in case, as nixpkgs has (CoinMP and coinmp).
  CoinMP = mk { name = "CoinMP"; files."$out/share/which" = "CoinMP\n"; };
  coinmp = mk { name = "coinmp"; files."$out/share/which" = "coinmp\n"; };
}
