; Rust nodes that shape a completion span (see python.spans.scm).

[
  (line_comment)
  (block_comment)
] @ctx.comment
[
  (string_literal)
  (raw_string_literal)
  (char_literal)
] @ctx.string

[
  (block)
  (declaration_list)
  (field_declaration_list)
  (enum_variant_list)
  (match_block)
] @span.block
[
  (arguments)
  (parameters)
  (token_tree)
] @span.args
[
  (array_expression)
  (field_initializer_list)
] @span.literal

[
  (function_item)
  (closure_expression)
] @scope.function
[
  (impl_item)
  (trait_item)
  (struct_item)
  (enum_item)
  (mod_item)
] @scope.class
