; C++ nodes that shape a completion span (see python.spans.scm).

(comment) @ctx.comment
[
  (string_literal)
  (raw_string_literal)
  (char_literal)
  (system_lib_string)
] @ctx.string

[
  (compound_statement)
  (field_declaration_list)
  (enumerator_list)
  (declaration_list)
] @span.block
[
  (argument_list)
  (parameter_list)
  (template_argument_list)
] @span.args
(initializer_list) @span.literal

[
  (function_definition)
  (lambda_expression)
] @scope.function
[
  (struct_specifier)
  (class_specifier)
  (union_specifier)
  (enum_specifier)
  (namespace_definition)
] @scope.class
