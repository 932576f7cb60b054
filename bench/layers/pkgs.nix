# The package set of the layering benchmark (go run ./bench/layers): plain
# Nix, no nixpkgs, no network, in the style of testdata/pkgs/default.nix.
#
# It is shaped like a slice of nixpkgs, not like its contents: about 380
# store paths with nixpkgs' names, versions and rough NAR sizes, and its
# references:
#
#   - a libc-like base (glibc and the three paths of its closure) that nearly
#     every other path references, directly or through a few hops;
#   - three paths over 100 MB (go, openjdk-headless, llvm-lib), each in
#     the closure of more than one image of the corpus;
#   - long dependency chains (ffmpeg -> libplacebo -> shaderc -> glslang ->
#     spirv-tools -> gcc-lib -> glibc -> libidn2 -> libunistring; a Jupyter
#     or awscli2 closure is a deep python3Packages DAG over python3);
#   - families the way nixpkgs has them: python3Packages.* (every one
#     references python3), perlPackages.* (perl), xorg.*, graphics and
#     media libraries.
#
# Every package is a derivation built by the host's /bin/sh with the host's
# static busybox (Debian busybox-static, imported with builtins.path) as its
# only tool. Its output holds the package's size in zeros (sizes are in kB
# of 1000 bytes) in lib/data, cheap to write and deterministic, and nix-support/references,
# which names its own output and the outputs of its dependencies: that is
# what makes Nix record the references (and a self-reference, as most
# nixpkgs paths have). Nothing here runs; only the graph and the sizes
# matter. Realised, the set takes about 2.6 GB of /nix/store.
#
# Like nixpkgs it is a function of { system, ... } returning an attribute
# set, so nixport's resolver (nix/resolve.nix) reads it unchanged.
{ system ? builtins.currentSystem, ... }:

let
  hostSystem = builtins.currentSystem;

  busyboxFile =
    if builtins.pathExists /bin/busybox
    then builtins.path { path = /bin/busybox; name = "busybox-static"; }
    else throw "the layering benchmark needs a static busybox at /bin/busybox (Debian package busybox-static)";

  # busybox picks its applet by file name: copy it to a file named busybox.
  busybox = derivation {
    name = "busybox";
    inherit system;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-e" "-c" ''
      mkdir -p $out/bin
      cp ${busyboxFile} $out/bin/busybox
      chmod 0555 $out/bin/busybox
    '' ];
  };

  # mk name kb deps: a store path named `name` of kb kB referencing deps.
  mk = name: kb: deps:
    if system != hostSystem then
      throw "the layering benchmark's packages build for ${hostSystem} only, not ${system}"
    else
      derivation {
        inherit name system;
        builder = "/bin/sh";
        PATH = "/usr/bin:/bin";
        refs = deps;
        args = [ "-e" "-c" ''
          bb="${busybox}/bin/busybox"
          $bb mkdir -p $out/lib $out/nix-support
          $bb head -c ${toString (kb * 1000)} /dev/zero > $out/lib/data
          $bb printf '%s\n' $out $refs > $out/nix-support/references
        '' ];
      };

  # get "xorg.libX11": a package of the set by attribute path.
  get = path: builtins.foldl' (v: k: v.${k}) pkgs
    (builtins.filter builtins.isString (builtins.split "\\." path));

  # top-level package: deps are attribute paths of the set
  p = name: kb: deps: mk name kb (map get deps);

  # Families, as nixpkgs' python3Packages and perlPackages: every member
  # references its interpreter; a dep names another member, else an
  # attribute path of the set.
  family = prefix: interpreter: specs:
    let self = builtins.mapAttrs
      (attr: s: mk "${prefix}-${attr}-${builtins.elemAt s 0}" (builtins.elemAt s 1)
        ([ interpreter ] ++ map (d: self.${d} or (get d)) (builtins.elemAt s 2)))
      specs;
    in self;

  pkgs = {
    # The base: what nearly everything references.
    libunistring = p "libunistring-1.2" 1900 [ ];
    libidn2 = p "libidn2-2.3.7" 350 [ "libunistring" ];
    libgcc = p "xgcc-13.2.0-libgcc" 140 [ ];
    glibc = p "glibc-2.39-52" 29000 [ "libidn2" "libgcc" ];
    gccLib = p "gcc-13.2.0-lib" 8300 [ "glibc" ];
    gfortranLib = p "gfortran-13.2.0-lib" 3500 [ "glibc" ];

    # System libraries.
    zlib = p "zlib-1.3.1" 130 [ "glibc" ];
    bzip2 = p "bzip2-1.0.8" 110 [ "glibc" ];
    xz = p "xz-5.4.6" 480 [ "glibc" ];
    zstd = p "zstd-1.5.6" 1100 [ "glibc" ];
    lz4 = p "lz4-1.9.4" 320 [ "glibc" ];
    lzo = p "lzo-2.10" 300 [ "glibc" ];
    libffi = p "libffi-3.4.6" 110 [ "glibc" ];
    expat = p "expat-2.6.2" 350 [ "glibc" ];
    attr = p "attr-2.5.2" 170 [ "glibc" ];
    acl = p "acl-2.3.2" 300 [ "glibc" "attr" ];
    libcap = p "libcap-2.69-lib" 100 [ "glibc" "attr" ];
    gmp = p "gmp-with-cxx-6.3.0" 1000 [ "glibc" "gccLib" ];
    mpfr = p "mpfr-4.2.1" 600 [ "glibc" "gmp" ];
    ncurses = p "ncurses-6.4" 3100 [ "glibc" ];
    readline = p "readline-8.2p10" 600 [ "glibc" "ncurses" ];
    libxcrypt = p "libxcrypt-4.4.36" 250 [ "glibc" ];
    openssl = p "openssl-3.0.13" 6600 [ "glibc" ];
    sqlite = p "sqlite-3.45.3" 1900 [ "glibc" "zlib" "readline" "ncurses" ];
    gdbm = p "gdbm-1.23" 700 [ "glibc" "readline" "ncurses" ];
    mpdecimal = p "mpdecimal-4.0.0" 700 [ "glibc" "gccLib" ];
    util-linux = p "util-linux-minimal-2.39.4-lib" 2500 [ "glibc" ];
    pcre2 = p "pcre2-10.43" 2800 [ "glibc" ];
    icu = p "icu4c-74.2" 36000 [ "glibc" "gccLib" ];
    libxml2 = p "libxml2-2.12.7" 2300 [ "glibc" "zlib" "xz" "icu" ];
    libgpg-error = p "libgpg-error-1.48" 900 [ "glibc" ];
    libgcrypt = p "libgcrypt-1.10.3" 1600 [ "glibc" "libgpg-error" ];
    libxslt = p "libxslt-1.1.39" 700 [ "glibc" "libxml2" "libgcrypt" ];
    brotli = p "brotli-1.1.0-lib" 900 [ "glibc" ];
    nghttp2 = p "nghttp2-1.61.0-lib" 250 [ "glibc" ];
    libssh2 = p "libssh2-1.11.0" 400 [ "glibc" "openssl" "zlib" ];
    keyutils = p "keyutils-1.6.3-lib" 60 [ "glibc" ];
    krb5 = p "krb5-1.21.2-lib" 3000 [ "glibc" "keyutils" "openssl" ];
    libpsl = p "libpsl-0.21.5" 150 [ "glibc" "libidn2" "libunistring" ];
    curl = p "curl-8.7.1" 1600 [ "glibc" "openssl" "zlib" "zstd" "brotli" "nghttp2" "libssh2" "libidn2" "libpsl" "krb5" ];
    libevent = p "libevent-2.1.12" 1300 [ "glibc" "openssl" ];
    libuv = p "libuv-1.48.0" 600 [ "glibc" ];
    c-ares = p "c-ares-1.27.0" 300 [ "glibc" ];
    libyaml = p "libyaml-0.2.5" 200 [ "glibc" ];
    oniguruma = p "oniguruma-6.9.9" 600 [ "glibc" ];
    libsodium = p "libsodium-1.0.19" 500 [ "glibc" ];
    zeromq = p "zeromq-4.3.5" 1500 [ "glibc" "gccLib" "libsodium" ];
    openblas = p "openblas-0.3.27" 35000 [ "glibc" "gccLib" "gfortranLib" ];
    libarchive = p "libarchive-3.7.4-lib" 1100 [ "glibc" "zlib" "bzip2" "xz" "zstd" "lz4" "openssl" "libxml2" "acl" "attr" ];
    rhash = p "rhash-1.4.4" 300 [ "glibc" ];
    systemd-libs = p "systemd-minimal-libs-255.4" 2000 [ "glibc" "libcap" "libgcrypt" "lz4" "xz" "zstd" ];
    dbus-lib = p "dbus-1.14.10-lib" 600 [ "glibc" "expat" "systemd-libs" ];
    ldns = p "ldns-1.8.3" 1400 [ "glibc" "openssl" ];
    utempter = p "libutempter-1.2.1" 50 [ "glibc" ];
    tzdata = p "tzdata-2024a" 1900 [ ];
    mailcap = p "mailcap-2.1.54" 100 [ ];
    cacert = p "nss-cacert-3.98" 500 [ ];
    iana-etc = p "iana-etc-20240318" 600 [ ];

    # Shell and command-line tools.
    bash = p "bash-5.2p26" 1700 [ "glibc" ];
    bashInteractive = p "bash-interactive-5.2p26" 8000 [ "glibc" "ncurses" "readline" ];
    coreutils = p "coreutils-9.5" 1800 [ "glibc" "acl" "attr" "gmp" "openssl" ];
    perl = p "perl-5.38.2" 58000 [ "glibc" "libxcrypt" ];
    moreutils = p "moreutils-0.69" 300 [ "glibc" "perl" "perlPackages.IPC-Run" "perlPackages.TimeDate" "perlPackages.TimeDuration" ];
    file = p "file-5.45" 9000 [ "glibc" "zlib" ];
    nano = p "nano-8.0" 2800 [ "glibc" "ncurses" "file" ];
    gnused = p "gnused-4.9" 800 [ "glibc" ];
    gnugrep = p "gnugrep-3.11" 1000 [ "glibc" "pcre2" ];
    gawk = p "gawk-5.2.2" 3300 [ "glibc" "readline" "mpfr" "gmp" ];
    less = p "less-643" 350 [ "glibc" "ncurses" "pcre2" ];
    openssh = p "openssh-9.7p1" 6000 [ "glibc" "openssl" "zlib" "libxcrypt" "krb5" "ldns" ];
    git = p "git-2.44.1" 55000 [
      "glibc" "zlib" "openssl" "curl" "expat" "pcre2" "perl" "python3" "bash" "coreutils" "gnused" "gnugrep" "gawk" "less" "openssh"
      "perlPackages.Error" "perlPackages.CGI" "perlPackages.LWP" "perlPackages.TermReadKey" "perlPackages.Net-SMTP-SSL" "perlPackages.MailTools" "perlPackages.Authen-SASL"
    ];
    htop = p "htop-3.3.0" 400 [ "glibc" "ncurses" ];
    jq = p "jq-1.7.1" 700 [ "glibc" "oniguruma" ];
    vim = p "vim-9.1.0377" 38000 [ "glibc" "ncurses" "acl" "libsodium" ];
    tmux = p "tmux-3.4" 1000 [ "glibc" "ncurses" "libevent" "utempter" ];
    ripgrep = p "ripgrep-14.1.0" 5700 [ "glibc" "gccLib" "pcre2" ];
    fd = p "fd-10.1.0" 3700 [ "glibc" "gccLib" ];
    bat = p "bat-0.24.0" 5500 [ "glibc" "gccLib" "zlib" ];
    gnumake = p "gnumake-4.4.1" 1700 [ "glibc" ];
    binutils = p "binutils-2.41" 30000 [ "glibc" "zlib" ];

    # Language runtimes and toolchains (go, openjdk and llvm are over 100 MB).
    python3 = p "python3-3.11.9" 80000 [ "glibc" "bzip2" "expat" "gdbm" "libffi" "libxcrypt" "mpdecimal" "ncurses" "openssl" "readline" "sqlite" "xz" "zlib" "tzdata" "bash" ];
    nodejs = p "nodejs-20.12.2" 65000 [ "glibc" "gccLib" "openssl" "zlib" "icu" "libuv" "brotli" "c-ares" "nghttp2" ];
    yarn = p "yarn-1.22.22" 5000 [ "nodejs" ];
    go = p "go-1.22.2" 185000 [ "tzdata" "mailcap" "iana-etc" ];
    gopls = p "gopls-0.15.3" 30000 [ ];
    golangci-lint = p "golangci-lint-1.57.2" 50000 [ ];
    openjdk = p "openjdk-headless-21.0.3+9" 210000 [ "glibc" "zlib" "gccLib" ];
    maven = p "apache-maven-3.9.6" 10000 [ "openjdk" "bash" ];
    gradle = p "gradle-8.7" 90000 [ "openjdk" "bash" "coreutils" ];
    kotlin = p "kotlin-1.9.23" 60000 [ "openjdk" "bash" ];
    llvm = p "llvm-17.0.6-lib" 125000 [ "glibc" "gccLib" "zlib" "ncurses" "libxml2" "libffi" ];
    clangLib = p "clang-17.0.6-lib" 85000 [ "llvm" "glibc" "gccLib" "zlib" "libxml2" ];
    clang = p "clang-wrapper-17.0.6" 600 [ "clangLib" "llvm" "glibc" "gccLib" "bash" "coreutils" "binutils" ];
    cmake = p "cmake-3.29.2" 40000 [ "glibc" "gccLib" "zlib" "curl" "expat" "libarchive" "libuv" "rhash" ];

    # Services.
    nginx = p "nginx-1.26.0" 4000 [ "glibc" "pcre2" "zlib" "openssl" "libxcrypt" "libxml2" "libxslt" "mailcap" ];
    redis = p "redis-7.2.4" 10000 [ "glibc" "openssl" "systemd-libs" ];
    postgresqlLib = p "postgresql-16.3-lib" 1000 [ "glibc" "openssl" "krb5" ];
    postgresql = p "postgresql-16.3" 40000 [ "glibc" "openssl" "zlib" "icu" "libxml2" "readline" "krb5" "lz4" "zstd" "tzdata" "libxcrypt" "systemd-libs" "postgresqlLib" "util-linux" ];

    # Static Go programs: they reference nothing.
    kubectl = p "kubectl-1.30.0" 55000 [ ];
    kubernetes-helm = p "kubernetes-helm-3.14.4" 60000 [ ];
    terraform = p "terraform-1.8.2" 85000 [ ];

    # Python applications.
    awscli2 = p "awscli2-2.15.43" 20000 [
      "python3" "python3Packages.botocore" "python3Packages.s3transfer" "python3Packages.awscrt" "python3Packages.prompt-toolkit"
      "python3Packages.ruamel-yaml" "python3Packages.distro" "python3Packages.docutils" "python3Packages.colorama"
      "python3Packages.jmespath" "python3Packages.python-dateutil" "python3Packages.urllib3" "python3Packages.cryptography"
    ];
    ansible = pkgs.python3Packages.ansible-core;

    # Graphics and media.
    xorg = {
      libXau = p "libXau-1.0.11" 30 [ "glibc" ];
      libXdmcp = p "libXdmcp-1.1.5" 60 [ "glibc" "libbsd" ];
      libxcb = p "libxcb-1.16.1" 4000 [ "glibc" "xorg.libXau" "xorg.libXdmcp" ];
      libX11 = p "libX11-1.8.9" 3000 [ "glibc" "xorg.libxcb" ];
      libXext = p "libXext-1.3.6" 200 [ "glibc" "xorg.libX11" ];
      libXrender = p "libXrender-0.9.11" 100 [ "glibc" "xorg.libX11" ];
      libXfixes = p "libXfixes-6.0.1" 60 [ "glibc" "xorg.libX11" ];
      libXi = p "libXi-1.8.1" 300 [ "glibc" "xorg.libX11" "xorg.libXext" "xorg.libXfixes" ];
      libXrandr = p "libXrandr-1.5.4" 100 [ "glibc" "xorg.libX11" "xorg.libXext" "xorg.libXrender" ];
      libXcursor = p "libXcursor-1.2.2" 80 [ "glibc" "xorg.libX11" "xorg.libXfixes" "xorg.libXrender" ];
      libXinerama = p "libXinerama-1.1.5" 40 [ "glibc" "xorg.libX11" "xorg.libXext" ];
      libXv = p "libXv-1.0.12" 50 [ "glibc" "xorg.libX11" "xorg.libXext" ];
      libXft = p "libXft-2.3.8" 200 [ "glibc" "xorg.libX11" "xorg.libXrender" "freetype" "fontconfig" ];
      libXt = p "libXt-1.3.0" 900 [ "glibc" "xorg.libX11" "xorg.libSM" ];
      libSM = p "libSM-1.2.4" 100 [ "glibc" "xorg.libICE" "util-linux" ];
      libICE = p "libICE-1.1.1" 150 [ "glibc" ];
    };
    libmd = p "libmd-1.1.0" 80 [ "glibc" ];
    libbsd = p "libbsd-0.12.2" 300 [ "glibc" "libmd" ];
    libxkbcommon = p "libxkbcommon-1.7.0" 700 [ "glibc" "xorg.libxcb" "libxml2" ];
    libpciaccess = p "libpciaccess-0.18.1" 80 [ "glibc" ];
    libdrm = p "libdrm-2.4.120" 800 [ "glibc" "libpciaccess" ];
    wayland = p "wayland-1.22.0" 500 [ "glibc" "libffi" "expat" "libxml2" ];
    libglvnd = p "libglvnd-1.7.0" 2000 [ "glibc" "xorg.libX11" "xorg.libXext" ];
    vulkan-loader = p "vulkan-loader-1.3.280" 600 [ "glibc" "xorg.libX11" "xorg.libxcb" "xorg.libXrandr" "wayland" ];
    spirv-tools = p "spirv-tools-1.3.280" 6000 [ "glibc" "gccLib" ];
    glslang = p "glslang-14.1.0" 5000 [ "glibc" "gccLib" "spirv-tools" ];
    shaderc = p "shaderc-2024.0-lib" 8000 [ "glibc" "gccLib" "glslang" "spirv-tools" ];
    libpng = p "libpng-apng-1.6.43" 400 [ "glibc" "zlib" ];
    libjpeg = p "libjpeg-turbo-3.0.2" 2000 [ "glibc" ];
    giflib = p "giflib-5.2.2" 150 [ "glibc" ];
    libdeflate = p "libdeflate-1.20" 200 [ "glibc" ];
    jbigkit = p "jbigkit-2.1" 200 [ "glibc" ];
    lerc = p "lerc-4.0.0" 600 [ "glibc" "gccLib" ];
    libtiff = p "libtiff-4.6.0" 1500 [ "glibc" "zlib" "xz" "zstd" "libjpeg" "libdeflate" "lerc" "jbigkit" ];
    libwebp = p "libwebp-1.3.2" 900 [ "glibc" "libpng" "libjpeg" "giflib" "libtiff" ];
    lcms2 = p "lcms2-2.16" 500 [ "glibc" "libjpeg" "libtiff" "zlib" ];
    openjpeg = p "openjpeg-2.5.2" 800 [ "glibc" "libpng" "libtiff" "lcms2" "zlib" ];
    freetype = p "freetype-2.13.2" 1100 [ "glibc" "zlib" "bzip2" "libpng" "brotli" ];
    fontconfig = p "fontconfig-2.15.0-lib" 500 [ "glibc" "freetype" "expat" ];
    fribidi = p "fribidi-1.0.13" 300 [ "glibc" ];
    graphite2 = p "graphite2-1.3.14" 300 [ "glibc" "gccLib" ];
    glib = p "glib-2.80.0" 6000 [ "glibc" "pcre2" "libffi" "zlib" "util-linux" ];
    harfbuzz = p "harfbuzz-8.4.0" 3500 [ "glibc" "freetype" "glib" "graphite2" "gccLib" ];
    pixman = p "pixman-0.43.4" 900 [ "glibc" ];
    cairo = p "cairo-1.18.0" 2500 [ "glibc" "fontconfig" "freetype" "pixman" "libpng" "zlib" "xorg.libX11" "xorg.libXext" "xorg.libXrender" "xorg.libxcb" "glib" "expat" "lzo" ];
    libdatrie = p "libdatrie-2019-12-20-lib" 100 [ "glibc" ];
    libthai = p "libthai-0.1.29" 1000 [ "glibc" "libdatrie" ];
    pango = p "pango-1.52.2" 1500 [ "glibc" "cairo" "harfbuzz" "fribidi" "fontconfig" "freetype" "glib" "xorg.libXft" "libthai" ];
    gdk-pixbuf = p "gdk-pixbuf-2.42.11" 2500 [ "glibc" "glib" "libpng" "libjpeg" "libtiff" ];
    librsvg = p "librsvg-2.58.0" 15000 [ "glibc" "gccLib" "cairo" "pango" "gdk-pixbuf" "glib" "libxml2" "freetype" "harfbuzz" ];
    libass = p "libass-0.17.1" 400 [ "glibc" "freetype" "fribidi" "fontconfig" "harfbuzz" ];
    libogg = p "libogg-1.3.5" 80 [ "glibc" ];
    libvorbis = p "libvorbis-1.3.7" 900 [ "glibc" "libogg" ];
    libopus = p "libopus-1.5.2" 500 [ "glibc" ];
    flac = p "flac-1.4.3" 1000 [ "glibc" "libogg" ];
    lame = p "lame-3.100-lib" 600 [ "glibc" ];
    libtheora = p "libtheora-1.1.1" 400 [ "glibc" "libogg" "libvorbis" ];
    fftwFloat = p "fftw-single-3.3.10" 6000 [ "glibc" ];
    fftw = p "fftw-double-3.3.10" 6000 [ "glibc" ];
    speex = p "speex-1.2.1" 300 [ "glibc" "libogg" "fftwFloat" ];
    x264 = p "x264-0-unstable-2023-10-01-lib" 2500 [ "glibc" ];
    numactl = p "numactl-2.0.18" 200 [ "glibc" ];
    x265 = p "x265-3.5" 4000 [ "glibc" "gccLib" "numactl" ];
    libvpx = p "libvpx-1.14.0" 3000 [ "glibc" ];
    dav1d = p "dav1d-1.4.1" 1800 [ "glibc" ];
    libaom = p "libaom-3.8.2" 5000 [ "glibc" ];
    svt-av1 = p "svt-av1-2.0.0" 4000 [ "glibc" "gccLib" ];
    rav1e = p "rav1e-0.7.1" 5000 [ "glibc" "gccLib" ];
    libva = p "libva-2.21.0" 600 [ "glibc" "libdrm" "xorg.libX11" "xorg.libXext" "xorg.libXfixes" "wayland" "libglvnd" ];
    libvdpau = p "libvdpau-1.5" 100 [ "glibc" "xorg.libX11" "xorg.libXext" ];
    soxr = p "soxr-0.1.3" 300 [ "glibc" ];
    libsamplerate = p "libsamplerate-0.2.2" 1500 [ "glibc" ];
    alsa-topology-conf = p "alsa-topology-conf-1.2.5.1" 300 [ ];
    alsa-ucm-conf = p "alsa-ucm-conf-1.2.11" 500 [ ];
    alsa-lib = p "alsa-lib-1.2.11" 2000 [ "glibc" "alsa-topology-conf" "alsa-ucm-conf" ];
    mpg123 = p "mpg123-1.32.6" 700 [ "glibc" "alsa-lib" ];
    libsndfile = p "libsndfile-1.2.2" 900 [ "glibc" "flac" "libogg" "libvorbis" "libopus" "lame" "mpg123" ];
    libpulseaudio = p "libpulseaudio-17.0" 3000 [ "glibc" "libsndfile" "dbus-lib" "systemd-libs" "xorg.libX11" "xorg.libxcb" "libcap" "glib" ];
    SDL2 = p "SDL2-2.30.2" 2500 [ "glibc" "xorg.libX11" "xorg.libXext" "xorg.libXi" "xorg.libXrandr" "xorg.libXcursor" "xorg.libXinerama" "libxkbcommon" "wayland" "libpulseaudio" "alsa-lib" "libdrm" "libglvnd" "vulkan-loader" ];
    libplacebo = p "libplacebo-6.338.2" 2000 [ "glibc" "gccLib" "vulkan-loader" "shaderc" "lcms2" ];
    zimg = p "zimg-3.0.5" 800 [ "glibc" "gccLib" ];
    vid-stab = p "vid.stab-1.1.1" 100 [ "glibc" ];
    srt = p "srt-1.5.3" 600 [ "glibc" "openssl" "gccLib" ];
    rubberband = p "rubberband-3.3.0" 600 [ "glibc" "gccLib" "fftw" "libsamplerate" ];
    libbluray = p "libbluray-1.3.4" 400 [ "glibc" "libxml2" "fontconfig" "freetype" ];
    libopenmpt = p "libopenmpt-0.7.6" 1500 [ "glibc" "gccLib" "zlib" "mpg123" "libogg" "libvorbis" ];
    chromaprint = p "chromaprint-1.5.1" 200 [ "glibc" "gccLib" "fftw" ];
    libssh = p "libssh-0.10.6" 800 [ "glibc" "openssl" "zlib" ];
    openal = p "openal-soft-1.23.1" 1200 [ "glibc" "gccLib" "alsa-lib" "libpulseaudio" ];
    libcaca = p "libcaca-0.99.beta20" 1200 [ "glibc" "zlib" "ncurses" "xorg.libX11" ];
    libv4l = p "v4l-utils-1.24.1" 1000 [ "glibc" "libjpeg" ];
    libraw1394 = p "libraw1394-2.1.2" 200 [ "glibc" ];
    libusb1 = p "libusb-1.0.27" 200 [ "glibc" "systemd-libs" ];
    libdc1394 = p "libdc1394-2.2.7" 600 [ "glibc" "libraw1394" "libusb1" ];
    xvidcore = p "xvidcore-1.3.7" 800 [ "glibc" ];
    opencore-amr = p "opencore-amr-0.1.6" 600 [ "glibc" "gccLib" ];
    twolame = p "twolame-0.4.0" 200 [ "glibc" ];
    ffmpeg = p "ffmpeg-6.1.1" 14000 [
      "glibc" "gccLib" "zlib" "bzip2" "xz" "libass" "libbluray" "libdrm" "libva" "libvdpau" "libvorbis" "libopus" "lame"
      "libtheora" "speex" "x264" "x265" "libvpx" "dav1d" "libaom" "svt-av1" "rav1e" "soxr" "SDL2" "libpulseaudio" "alsa-lib"
      "libplacebo" "vulkan-loader" "zimg" "vid-stab" "srt" "rubberband" "libopenmpt" "chromaprint" "libssh" "openal" "libcaca"
      "libv4l" "libdc1394" "xvidcore" "opencore-amr" "twolame" "libwebp" "openjpeg" "xorg.libX11" "xorg.libxcb" "xorg.libXext"
      "xorg.libXv" "fontconfig" "freetype" "fribidi" "harfbuzz" "openssl" "libxml2"
    ];
    imath = p "imath-3.1.11" 300 [ "glibc" "gccLib" ];
    openexr = p "openexr-3.2.4" 5000 [ "glibc" "gccLib" "imath" "zlib" "libdeflate" ];
    libde265 = p "libde265-1.0.15" 600 [ "glibc" "gccLib" ];
    libheif = p "libheif-1.17.6" 1200 [ "glibc" "gccLib" "libde265" "x265" "dav1d" "libaom" "libjpeg" "libpng" ];
    libraw = p "libraw-0.21.2-lib" 1400 [ "glibc" "gccLib" "lcms2" "libjpeg" "zlib" ];
    jbig2dec = p "jbig2dec-0.20" 200 [ "glibc" ];
    libpaper = p "libpaper-1.1.29" 100 [ "glibc" ];
    ghostscript = p "ghostscript-10.03.0" 35000 [ "glibc" "libjpeg" "libpng" "zlib" "lcms2" "freetype" "fontconfig" "libtiff" "openjpeg" "jbig2dec" "libpaper" "expat" ];
    djvulibre = p "djvulibre-3.5.28" 4000 [ "glibc" "gccLib" "libjpeg" "libtiff" ];
    libzip = p "libzip-1.10.1" 300 [ "glibc" "zlib" "bzip2" "xz" "zstd" "openssl" ];
    liblqr = p "liblqr-1-0.4.2" 200 [ "glibc" "glib" ];
    libltdl = p "libtool-2.4.7-lib" 100 [ "glibc" ];
    imagemagick = p "imagemagick-7.1.1-32" 12000 [
      "glibc" "gccLib" "bzip2" "fontconfig" "freetype" "libjpeg" "libpng" "libtiff" "libwebp" "libxml2" "zlib" "lcms2" "openexr"
      "openjpeg" "libheif" "libraw" "librsvg" "djvulibre" "ghostscript" "libzip" "fftw" "xorg.libX11" "xorg.libXext" "xorg.libXt"
      "pango" "cairo" "xz" "zstd" "liblqr" "libltdl"
    ];

    # name = [ version kB [ deps: members first, else attribute paths ] ]
    python3Packages = family "python3.11" pkgs.python3 {
      setuptools = [ "69.5.1" 4500 [ ] ];
      wheel = [ "0.43.0" 300 [ ] ];
      pip = [ "24.0" 12000 [ "setuptools" "wheel" ] ];
      six = [ "1.16.0" 60 [ ] ];
      idna = [ "3.7" 600 [ ] ];
      charset-normalizer = [ "3.3.2" 700 [ ] ];
      certifi = [ "2024.02.02" 400 [ "cacert" ] ];
      urllib3 = [ "2.2.1" 900 [ ] ];
      requests = [ "2.31.0" 500 [ "idna" "charset-normalizer" "certifi" "urllib3" ] ];
      packaging = [ "24.0" 400 [ ] ];
      pyparsing = [ "3.1.2" 1000 [ ] ];
      attrs = [ "23.2.0" 400 [ ] ];
      pyyaml = [ "6.0.1" 900 [ "libyaml" ] ];
      markupsafe = [ "2.1.5" 100 [ ] ];
      jinja2 = [ "3.1.3" 1500 [ "markupsafe" ] ];
      click = [ "8.1.7" 700 [ ] ];
      itsdangerous = [ "2.1.2" 100 [ ] ];
      werkzeug = [ "3.0.2" 2000 [ "markupsafe" ] ];
      blinker = [ "1.7.0" 80 [ ] ];
      flask = [ "3.0.3" 900 [ "werkzeug" "jinja2" "itsdangerous" "click" "blinker" ] ];
      python-dateutil = [ "2.9.0.post0" 1000 [ "six" ] ];
      pytz = [ "2024.1" 3000 [ ] ];
      tzdata = [ "2024.1" 1800 [ ] ];
      numpy = [ "1.26.4" 45000 [ "openblas" "gccLib" ] ];
      pandas = [ "2.2.2" 60000 [ "numpy" "python-dateutil" "pytz" "tzdata" ] ];
      scipy = [ "1.13.0" 80000 [ "numpy" "openblas" "gfortranLib" ] ];
      joblib = [ "1.4.0" 1500 [ ] ];
      threadpoolctl = [ "3.4.0" 100 [ ] ];
      scikit-learn = [ "1.4.2" 40000 [ "numpy" "scipy" "joblib" "threadpoolctl" ] ];
      cycler = [ "0.12.1" 50 [ ] ];
      kiwisolver = [ "1.4.5" 300 [ "gccLib" ] ];
      fonttools = [ "4.51.0" 15000 [ ] ];
      contourpy = [ "1.2.1" 800 [ "numpy" "gccLib" ] ];
      pillow = [ "10.3.0" 4000 [ "libjpeg" "libpng" "zlib" "freetype" "libtiff" "libwebp" "lcms2" "openjpeg" "xorg.libxcb" ] ];
      matplotlib = [ "3.8.4" 35000 [ "numpy" "pillow" "pyparsing" "cycler" "kiwisolver" "fonttools" "contourpy" "python-dateutil" "packaging" "freetype" ] ];
      seaborn = [ "0.13.2" 2000 [ "matplotlib" "pandas" "numpy" ] ];
      llvmlite = [ "0.42.0" 3000 [ "llvm" "gccLib" ] ];
      numba = [ "0.59.1" 15000 [ "numpy" "llvmlite" ] ];
      pycparser = [ "2.22" 900 [ ] ];
      cffi = [ "1.16.0" 1000 [ "pycparser" "libffi" ] ];
      cryptography = [ "42.0.5" 8000 [ "cffi" "openssl" ] ];
      pyopenssl = [ "24.1.0" 400 [ "cryptography" ] ];
      bcrypt = [ "4.1.2" 600 [ ] ];
      pynacl = [ "1.5.0" 700 [ "cffi" "libsodium" ] ];
      paramiko = [ "3.4.0" 1500 [ "bcrypt" "cryptography" "pynacl" ] ];
      jmespath = [ "1.0.1" 100 [ ] ];
      botocore = [ "1.34.84" 78000 [ "jmespath" "python-dateutil" "urllib3" ] ];
      s3transfer = [ "0.10.1" 400 [ "botocore" ] ];
      boto3 = [ "1.34.84" 1000 [ "botocore" "jmespath" "s3transfer" ] ];
      awscrt = [ "0.20.9" 6000 [ "openssl" ] ];
      wcwidth = [ "0.2.13" 500 [ ] ];
      prompt-toolkit = [ "3.0.43" 4000 [ "wcwidth" ] ];
      colorama = [ "0.4.6" 100 [ ] ];
      docutils = [ "0.20.1" 6000 [ ] ];
      ruamel-yaml-clib = [ "0.2.8" 500 [ ] ];
      ruamel-yaml = [ "0.18.6" 1200 [ "ruamel-yaml-clib" ] ];
      distro = [ "1.9.0" 100 [ ] ];
      typing-extensions = [ "4.11.0" 300 [ ] ];
      asgiref = [ "3.8.1" 200 [ "typing-extensions" ] ];
      sqlparse = [ "0.5.0" 400 [ ] ];
      django = [ "4.2.11" 40000 [ "asgiref" "sqlparse" ] ];
      psycopg2 = [ "2.9.9" 700 [ "postgresqlLib" ] ];
      gunicorn = [ "22.0.0" 600 [ "packaging" ] ];
      resolvelib = [ "1.0.1" 100 [ ] ];
      ansible-core = [ "2.16.5" 25000 [ "jinja2" "pyyaml" "cryptography" "packaging" "resolvelib" "paramiko" ] ];
      pygments = [ "2.17.2" 9000 [ ] ];
      mdurl = [ "0.1.2" 50 [ ] ];
      markdown-it-py = [ "3.0.0" 500 [ "mdurl" ] ];
      rich = [ "13.7.1" 2500 [ "pygments" "markdown-it-py" ] ];
      annotated-types = [ "0.6.0" 100 [ ] ];
      pydantic-core = [ "2.18.1" 6000 [ "typing-extensions" "gccLib" ] ];
      pydantic = [ "2.7.0" 3000 [ "pydantic-core" "annotated-types" "typing-extensions" ] ];
      sniffio = [ "1.3.1" 50 [ ] ];
      anyio = [ "4.3.0" 800 [ "idna" "sniffio" ] ];
      h11 = [ "0.14.0" 300 [ ] ];
      httpcore = [ "1.0.5" 600 [ "h11" "certifi" "anyio" ] ];
      httpx = [ "0.27.0" 800 [ "httpcore" "anyio" "certifi" "idna" "sniffio" ] ];
      starlette = [ "0.37.2" 900 [ "anyio" ] ];
      fastapi = [ "0.110.1" 1500 [ "starlette" "pydantic" ] ];
      uvicorn = [ "0.29.0" 700 [ "click" "h11" ] ];
      webencodings = [ "0.5.1" 60 [ ] ];
      lxml = [ "5.2.1" 10000 [ "libxml2" "libxslt" "zlib" ] ];
      soupsieve = [ "2.5" 200 [ ] ];
      beautifulsoup4 = [ "4.12.3" 1200 [ "soupsieve" ] ];
      html5lib = [ "1.1" 1500 [ "six" "webencodings" ] ];
      tqdm = [ "4.66.2" 500 [ ] ];
      networkx = [ "3.3" 12000 [ ] ];
      mpmath = [ "1.3.0" 3000 [ ] ];
      sympy = [ "1.12" 30000 [ "mpmath" ] ];
      pluggy = [ "1.4.0" 100 [ ] ];
      iniconfig = [ "2.0.0" 50 [ ] ];
      pytest = [ "8.1.1" 3000 [ "pluggy" "iniconfig" "packaging" ] ];
      platformdirs = [ "4.2.0" 100 [ ] ];
      traitlets = [ "5.14.2" 600 [ ] ];
      jupyter-core = [ "5.7.2" 300 [ "traitlets" "platformdirs" ] ];
      pyzmq = [ "25.1.2" 3000 [ "zeromq" "cffi" ] ];
      tornado = [ "6.4" 4000 [ ] ];
      jupyter-client = [ "8.6.1" 700 [ "jupyter-core" "pyzmq" "python-dateutil" "tornado" "traitlets" ] ];
      debugpy = [ "1.8.1" 15000 [ ] ];
      psutil = [ "5.9.8" 1500 [ ] ];
      nest-asyncio = [ "1.6.0" 50 [ ] ];
      decorator = [ "5.1.1" 50 [ ] ];
      parso = [ "0.8.4" 1000 [ ] ];
      jedi = [ "0.19.1" 9000 [ "parso" ] ];
      ptyprocess = [ "0.7.0" 100 [ ] ];
      pexpect = [ "4.9.0" 400 [ "ptyprocess" ] ];
      matplotlib-inline = [ "0.1.7" 50 [ "traitlets" ] ];
      executing = [ "2.0.1" 300 [ ] ];
      asttokens = [ "2.4.1" 200 [ "six" ] ];
      pure-eval = [ "0.2.2" 100 [ ] ];
      stack-data = [ "0.6.3" 300 [ "executing" "asttokens" "pure-eval" ] ];
      ipython = [ "8.22.2" 6000 [ "jedi" "pexpect" "prompt-toolkit" "pygments" "stack-data" "traitlets" "decorator" "matplotlib-inline" ] ];
      comm = [ "0.2.2" 50 [ "traitlets" ] ];
      ipykernel = [ "6.29.4" 1000 [ "comm" "debugpy" "ipython" "jupyter-client" "jupyter-core" "matplotlib-inline" "nest-asyncio" "packaging" "psutil" "pyzmq" "tornado" "traitlets" ] ];
      fastjsonschema = [ "2.19.1" 200 [ ] ];
      rpds-py = [ "0.18.0" 1200 [ "gccLib" ] ];
      referencing = [ "0.34.0" 200 [ "attrs" "rpds-py" ] ];
      jsonschema-specifications = [ "2023.12.1" 300 [ "referencing" ] ];
      jsonschema = [ "4.21.1" 1000 [ "attrs" "jsonschema-specifications" "referencing" "rpds-py" ] ];
      nbformat = [ "5.10.4" 600 [ "fastjsonschema" "jsonschema" "jupyter-core" "traitlets" ] ];
      mistune = [ "3.0.2" 300 [ ] ];
      tinycss2 = [ "1.2.1" 200 [ "webencodings" ] ];
      bleach = [ "6.1.0" 400 [ "six" "webencodings" "tinycss2" ] ];
      pandocfilters = [ "1.5.1" 50 [ ] ];
      defusedxml = [ "0.7.1" 100 [ ] ];
      nbclient = [ "0.10.0" 300 [ "jupyter-client" "jupyter-core" "nbformat" "traitlets" ] ];
      nbconvert = [ "7.16.3" 2500 [ "beautifulsoup4" "bleach" "defusedxml" "jinja2" "jupyter-core" "markupsafe" "mistune" "nbclient" "nbformat" "packaging" "pandocfilters" "pygments" "tinycss2" "traitlets" ] ];
      terminado = [ "0.18.1" 100 [ "ptyprocess" "tornado" ] ];
      send2trash = [ "1.8.3" 100 [ ] ];
      prometheus-client = [ "0.20.0" 300 [ ] ];
      argon2-cffi-bindings = [ "21.2.0" 300 [ "cffi" ] ];
      argon2-cffi = [ "23.1.0" 100 [ "argon2-cffi-bindings" ] ];
      websocket-client = [ "1.7.0" 300 [ ] ];
      jupyter-server = [ "2.14.0" 3000 [ "anyio" "argon2-cffi" "jinja2" "jupyter-client" "jupyter-core" "nbconvert" "nbformat" "packaging" "prometheus-client" "send2trash" "terminado" "tornado" "traitlets" "websocket-client" ] ];
      json5 = [ "0.9.25" 100 [ ] ];
      babel = [ "2.14.0" 30000 [ ] ];
      jupyterlab-server = [ "2.26.0" 300 [ "babel" "jinja2" "json5" "jsonschema" "jupyter-server" "packaging" "requests" ] ];
      notebook-shim = [ "0.2.4" 50 [ "jupyter-server" ] ];
      jupyter-lsp = [ "2.2.5" 300 [ "jupyter-server" ] ];
      async-lru = [ "2.0.4" 50 [ ] ];
      jupyterlab = [ "4.1.6" 30000 [ "async-lru" "httpx" "ipykernel" "jinja2" "jupyter-core" "jupyter-lsp" "jupyter-server" "jupyterlab-server" "notebook-shim" "packaging" "tornado" "traitlets" ] ];
    };

    perlPackages = family "perl5.38.2" pkgs.perl {
      IO-Tty = [ "1.20" 200 [ "glibc" ] ];
      IPC-Run = [ "20231003.0" 400 [ "IO-Tty" ] ];
      TimeDate = [ "2.33" 300 [ ] ];
      TimeDuration = [ "1.21" 100 [ ] ];
      URI = [ "5.21" 600 [ ] ];
      HTTP-Date = [ "6.06" 100 [ "TimeDate" ] ];
      Encode-Locale = [ "1.05" 50 [ ] ];
      LWP-MediaTypes = [ "6.04" 100 [ ] ];
      IO-HTML = [ "1.004" 50 [ ] ];
      Clone = [ "0.46" 100 [ "glibc" ] ];
      HTTP-Message = [ "6.45" 500 [ "URI" "HTTP-Date" "Encode-Locale" "LWP-MediaTypes" "IO-HTML" "Clone" ] ];
      HTML-Tagset = [ "3.20" 50 [ ] ];
      HTML-Parser = [ "3.81" 400 [ "HTML-Tagset" "glibc" ] ];
      Net-HTTP = [ "6.23" 100 [ "URI" ] ];
      File-Listing = [ "6.16" 50 [ "HTTP-Date" ] ];
      HTTP-Cookies = [ "6.10" 100 [ "HTTP-Message" ] ];
      WWW-RobotRules = [ "6.02" 50 [ "URI" ] ];
      HTTP-Negotiate = [ "6.01" 50 [ "HTTP-Message" ] ];
      LWP = [ "6.72" 800 [ "HTTP-Message" "HTML-Parser" "Net-HTTP" "File-Listing" "HTTP-Cookies" "WWW-RobotRules" "HTTP-Negotiate" ] ];
      Error = [ "0.17029" 100 [ ] ];
      CGI = [ "4.59" 600 [ "HTML-Parser" ] ];
      TermReadKey = [ "2.38" 100 [ "glibc" ] ];
      Net-SSLeay = [ "1.92" 1500 [ "openssl" "zlib" ] ];
      IO-Socket-SSL = [ "2.083" 900 [ "Net-SSLeay" "URI" ] ];
      Net-SMTP-SSL = [ "1.04" 50 [ "IO-Socket-SSL" ] ];
      MailTools = [ "2.21" 300 [ "TimeDate" ] ];
      Digest-HMAC = [ "1.04" 50 [ ] ];
      Authen-SASL = [ "2.1700" 100 [ "Digest-HMAC" ] ];
    };
  };
in
pkgs
