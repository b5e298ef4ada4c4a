{
  description = "upload-service: a self-hosted upload service and Quart extension";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      project = (builtins.fromTOML (builtins.readFile ./pyproject.toml)).project;

      # htmx from the npm registry, pinned by package-lock.json (version and integrity), when the UI has one.
      htmxFor = pkgs:
        let
          lockFile = ./package-lock.json;
          lock = builtins.fromJSON (builtins.readFile lockFile);
          entry = lock.packages."node_modules/htmx.org";
        in
        if builtins.pathExists lockFile then
          pkgs.fetchurl {
            url = "https://registry.npmjs.org/htmx.org/-/htmx.org-${entry.version}.tgz";
            hash = entry.integrity;
          }
        else null;

      serviceFor = pkgs:
        let
          py = pkgs.python311Packages;
          htmx = htmxFor pkgs;
        in
        py.buildPythonApplication {
          pname = project.name;
          inherit (project) version;
          pyproject = true;
          src = ./.;
          build-system = [ py.hatchling ];
          dependencies = with py; [
            quart hypercorn pluggy pydantic-settings aiofiles python-multipart itsdangerous prometheus-client
            limits python-magic # nixpkgs' python-magic points at its own libmagic
          ];
          pythonRelaxDeps = true; # nixpkgs' versions, whatever the pyproject bounds say
          preBuild = pkgs.lib.optionalString (htmx != null) ''
            mkdir -p upload_service/static/vendor
            tar -xzf ${htmx} --strip-components=2 -C upload_service/static/vendor package/dist/htmx.min.js
          '';
          pythonImportsCheck = [ "upload_service" ];
          doCheck = false; # the test suite runs real servers and browsers: CI runs it with scripts/test
          meta.mainProgram = "upload-service";
        };

      # The same runtime as the Dockerfile's: uid 10001, /uploads volume, 0.0.0.0:8000, /healthz check.
      imageFor = pkgs:
        let service = serviceFor pkgs;
        in
        pkgs.dockerTools.buildLayeredImage {
          name = "upload-service";
          tag = project.version;
          contents = [ service pkgs.python311 pkgs.cacert ];
          fakeRootCommands = ''
            mkdir -p uploads tmp home/app
            chown 10001:10001 uploads home/app
            chmod 1777 tmp
          '';
          enableFakechroot = true;
          config = {
            Cmd = [ "${service}/bin/upload-service" ];
            User = "10001:10001";
            WorkingDir = "/home/app";
            Env = [ "UPLOAD_DIR=/uploads" "HOST=0.0.0.0" "PORT=8000" "PYTHONUNBUFFERED=1" ];
            ExposedPorts."8000/tcp" = { };
            Volumes."/uploads" = { };
            Healthcheck = {
              Test = [ "CMD" "${pkgs.python311}/bin/python" "-c"
                "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)" ];
              Interval = 30000000000;
              Timeout = 5000000000;
              Retries = 3;
            };
          };
        };

      # Images are Linux images: on aarch64-darwin the image is built for aarch64-linux (needs a Linux builder).
      linuxPkgsFor = pkgs:
        if pkgs.stdenv.isDarwin then nixpkgs.legacyPackages.aarch64-linux else pkgs;
    in
    {
      packages = forAllSystems (pkgs: {
        default = serviceFor pkgs;
        dockerImage = imageFor (linuxPkgsFor pkgs);
      });

      # `nix build .#dockerImage.x86_64-linux`, as the original README has it.
      dockerImage = nixpkgs.lib.genAttrs [ "x86_64-linux" "aarch64-linux" ]
        (system: imageFor nixpkgs.legacyPackages.${system});

      apps = forAllSystems (pkgs: {
        default = { type = "app"; program = "${serviceFor pkgs}/bin/upload-service"; };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.python311 pkgs.uv pkgs.nodejs_22 pkgs.openssl pkgs.hadolint ]
            ++ pkgs.lib.optional pkgs.stdenv.isLinux pkgs.chromium; # browser tests: Linux only
          shellHook = ''
            export UV_PYTHON=${pkgs.python311}/bin/python3.11
            echo "upload-service dev shell: scripts/test runs the tests, uv run upload-service --dev runs it"
          '';
        };
      });
    };
}
