; C nodes that shape a completion span (see python.spans.scm).

(comment) @ctx.comment
[
  (string_literal)
  (char_literal)
  (system_lib_string)
] @ctx.string

[
  (compound_statement)
  (field_declaration_list)
  (enumerator_list)
] @span.block
[
  (argument_list)
  (parameter_list)
] @span.args
(initializer_list) @span.literal

(function_definition) @scope.function
[
  (struct_specifier)
  (union_specifier)
  (enum_specifier)
] @scope.class
