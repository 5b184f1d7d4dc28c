//===- Passes.td - attn dialect passes ---------------------*- tablegen -*-===//

#ifndef ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD
#define ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def AttnBindParams : Pass<"attn-bind-params", "SpecOp"> {
  let summary = "Replace parameter defaults with given values";
  let description = [{
    Overrides the default value region of each named `attn.param` with a
    constant. Values are given as `name=value` pairs; an unknown name, or a
    value that does not parse as the parameter's type, is an error.

    ```mlir
    // attn-opt --pass-pipeline='builtin.module(attn.spec(attn-bind-params{values=window=8}))'
    attn.param @window : i64 {
      %c = arith.constant 8 : i64
      attn.yield %c : i64
    }
    ```
  }];
  let options = [
    ListOption<"values", "values", "std::string",
               "name=value pairs overriding parameter defaults">
  ];
  let dependentDialects = ["::mlir::arith::ArithDialect"];
}

#endif // ATTN_DIALECT_ATTN_TRANSFORMS_PASSES_TD
