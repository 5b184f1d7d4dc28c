# -*- Python -*-
import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "ATTN"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".attn", ".test"]
config.excludes = ["Inputs", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py",
                   "oracle.py"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.attn_obj_root, "test")

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# Compiled kernels of the tests go to a cache inside the build tree.
config.environment["ATTN_CACHE_DIR"] = os.path.join(config.attn_obj_root, "kernel-cache")
config.substitutions.append(("%python", config.python_executable))
config.substitutions.append(("%attnc", os.path.join(config.attn_tools_dir, "attnc")))
config.substitutions.append(("%attn-opt", os.path.join(config.attn_tools_dir, "attn-opt")))
config.substitutions.append(("%examples", os.path.join(config.attn_src_root,
                                                       "examples")))
tool_dirs = [config.attn_tools_dir, config.llvm_tools_dir]
# llvm-objdump and llvm-nm inspect the objects attnc writes (attnc tests).
tools = ["attn-opt", "attnc", "llvm-objdump", "llvm-nm"]
llvm_config.add_tool_substitutions(tools, tool_dirs)
