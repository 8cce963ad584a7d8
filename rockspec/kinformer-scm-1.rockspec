rockspec_format = "3.0"
package = "kinformer"
version = "scm-1"
source = {
  url = "git+file://.",
}
description = {
  summary = "Kubernetes clients and informers for Lua, with a C core",
  detailed = [[
kinformer keeps a local, always-converging cache of any Kubernetes resource
(built-in or custom) and calls Lua when it changes. The REST client, the
watch stream and the object store are written in C over libcurl.
]],
  license = "Apache-2.0",
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson >= 2.1",
}
external_dependencies = {
  -- Only the library is looked up: Debian keeps curl.h in a multiarch include
  -- directory that the compiler searches but luarocks does not.
  CURL = { library = "curl" },
  YAML = { header = "yaml.h", library = "yaml" },
  MHD = { header = "microhttpd.h", library = "microhttpd" },
}
build = {
  type = "builtin",
  modules = {
    ["kinformer"] = "lua/kinformer/init.lua",
    ["kinformer.client"] = "lua/kinformer/client.lua",
    ["kinformer.errors"] = "lua/kinformer/errors.lua",
    ["kinformer.discovery"] = "lua/kinformer/discovery.lua",
    ["kinformer.rest"] = "lua/kinformer/rest.lua",
    ["kinformer.informer"] = "lua/kinformer/informer.lua",
    ["kinformer.selector"] = "lua/kinformer/selector.lua",
    ["kinformer.opts"] = "lua/kinformer/opts.lua",
    ["kinformer.core"] = {
      sources = {
        "csrc/kn_err.c", "csrc/kn_buf.c", "csrc/kn_base64.c", "csrc/kn_json.c",
        "csrc/kn_kubeconfig.c", "csrc/kn_config.c", "csrc/kn_exec.c", "csrc/kn_creds.c", "csrc/kn_loop.c",
        "csrc/kn_client.c",
        "csrc/kn_obj.c", "csrc/kn_watch.c", "csrc/kn_list.c", "csrc/kn_store.c", "csrc/kn_queue.c", "csrc/kn_reflector.c",
        "csrc/kn_reflector_client.c", "csrc/kn_calls.c", "csrc/kn_workqueue.c",
        "csrc/kn_metrics.c", "csrc/kn_health.c", "csrc/kn_serve.c",
        "csrc/lk_core.c", "csrc/lk_json.c", "csrc/lk_informer.c", "csrc/lk_workqueue.c", "csrc/lk_signal.c",
        "csrc/lk_serve.c",
      },
      libraries = { "curl", "yaml", "microhttpd", "pthread", "m" },
      incdirs = { "$(YAML_INCDIR)", "$(MHD_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(YAML_LIBDIR)", "$(MHD_LIBDIR)" },
    },
  },
}
