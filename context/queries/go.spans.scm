; Go nodes that shape a completion span (see python.spans.scm).

(comment) @ctx.comment
[
  (interpreted_string_literal)
  (raw_string_literal)
  (rune_literal)
] @ctx.string

[
  (block)
  (field_declaration_list)
  (interface_type)
] @span.block
[
  (argument_list)
  (parameter_list)
] @span.args
(literal_value) @span.literal

[
  (function_declaration)
  (method_declaration)
  (func_literal)
] @scope.function
(type_declaration) @scope.class
