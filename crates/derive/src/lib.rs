//! `#[derive(Module)]`: writes a layer's structural walk from its named fields, so that a model
//! file holds only its layers and its forward, as a PyTorch `nn.Module` does.
//!
//! The derive implements `aics_nn::Fields` (the walk `Module`'s provided `visit`,
//! `set_training`, `visit_rngs` and `type_name` call); the struct then implements `Module` with
//! its `forward` alone. Fields are marked by what they are; unmarked fields (sizes, settings)
//! are not walked:
//!
//! | attribute | field type | walked as |
//! |---|---|---|
//! | `#[param]` | `Tensor`, `Option<Tensor>` | a trained parameter under the field's name |
//! | `#[buffer]` | `Tensor`, `Option<Tensor>` | saved state that is not trained (running statistics) |
//! | `#[module]` | a `Module`, `Option<_>`, `Vec<_>` (children `name.0`, `name.1`, …) | a child under the field's name |
//! | `#[rng]` | `Mutex<Rng>` | a random stream (dropout's), saved with checkpoints |
//! | `#[training]` | `AtomicBool` | the train/eval flag |
//!
//! `#[module(name = "AuxLogits")]` (or `#[param(name = "…")]`, …) gives a state-dict key that is
//! not a Rust identifier; `#[module(flatten)]` lays a child's keys out at this level (a stem
//! whose layers are keyed `conv1`, `bn1` directly, as in torchvision). `#[module(transparent)]`
//! on the struct lets a summary or a feature capture look into its container fields
//! (`aics_nn::inspect`); without it the struct is seen as one layer.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields, Type};

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Param,
    Buffer,
    Module,
    Rng,
    Training,
}

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    One,
    Option,
    Vec,
}

fn shape_of(ty: &Type) -> Shape {
    if let Type::Path(p) = ty {
        if let Some(seg) = p.path.segments.last() {
            if seg.ident == "Option" {
                return Shape::Option;
            }
            if seg.ident == "Vec" {
                return Shape::Vec;
            }
        }
    }
    Shape::One
}

struct Field {
    ident: syn::Ident,
    role: Role,
    key: String,
    flatten: bool,
    shape: Shape,
}

fn parse_field(f: &syn::Field) -> syn::Result<Option<Field>> {
    let Some(ident) = f.ident.clone() else {
        return Err(syn::Error::new_spanned(
            f,
            "derive(Module) needs named fields",
        ));
    };
    let mut found: Option<Field> = None;
    for attr in &f.attrs {
        let role = match attr.path().get_ident().map(|i| i.to_string()).as_deref() {
            Some("param") => Role::Param,
            Some("buffer") => Role::Buffer,
            Some("module") => Role::Module,
            Some("rng") => Role::Rng,
            Some("training") => Role::Training,
            _ => continue,
        };
        if found.is_some() {
            return Err(syn::Error::new_spanned(attr, "a field has one role"));
        }
        let mut field = Field {
            key: ident.to_string(),
            ident: ident.clone(),
            role,
            flatten: false,
            shape: shape_of(&f.ty),
        };
        if let syn::Meta::List(_) = &attr.meta {
            attr.parse_nested_meta(|m| {
                if m.path.is_ident("name") {
                    let s: syn::LitStr = m.value()?.parse()?;
                    field.key = s.value();
                    Ok(())
                } else if m.path.is_ident("flatten") && role == Role::Module {
                    field.flatten = true;
                    Ok(())
                } else {
                    Err(m.error("expected `name = \"…\"` or, on a module, `flatten`"))
                }
            })?;
        }
        if matches!(role, Role::Rng | Role::Training) && field.shape != Shape::One {
            return Err(syn::Error::new_spanned(
                &f.ty,
                "#[rng] and #[training] fields are a Mutex<Rng> and an AtomicBool",
            ));
        }
        if matches!(role, Role::Param | Role::Buffer) && field.shape == Shape::Vec {
            return Err(syn::Error::new_spanned(
                &f.ty,
                "#[param] and #[buffer] fields are a Tensor or an Option<Tensor>",
            ));
        }
        found = Some(field);
    }
    Ok(found)
}

/// Apply `body` (which uses `m` and `at`, the child's key) to each child module of a field.
fn each_child(f: &Field, body: Tokens) -> Tokens {
    let id = &f.ident;
    let key = &f.key;
    let at = if f.flatten {
        quote!(prefix.to_string())
    } else {
        quote!(::aics_nn::module::key(prefix, #key))
    };
    match f.shape {
        Shape::One => quote! { { let m = &self.#id; let at = #at; #body } },
        Shape::Option => quote! { if let Some(m) = &self.#id { let at = #at; #body } },
        Shape::Vec => quote! {
            for (i, m) in self.#id.iter().enumerate() {
                let at = ::aics_nn::module::key(&#at, &i.to_string());
                #body
            }
        },
    }
}

#[proc_macro_derive(Module, attributes(param, buffer, module, rng, training))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(t) => t.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Struct(s) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "derive(Module) is for structs",
        ));
    };
    let fields: Vec<Field> = match &s.fields {
        Fields::Named(n) => n
            .named
            .iter()
            .map(parse_field)
            .collect::<syn::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect(),
        // a unit or tuple struct (`ReLU`, `MaxPool2d(params)`) has nothing to walk
        Fields::Unit | Fields::Unnamed(_) => Vec::new(),
    };
    let name = &input.ident;
    let type_name = name.to_string();
    let mut transparent = false;
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|m| {
            if m.path.is_ident("transparent") {
                transparent = true;
                Ok(())
            } else {
                Err(m.error("expected `transparent`"))
            }
        })?;
    }
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();

    let mut visit = Vec::new();
    let mut train = Vec::new();
    let mut rngs = Vec::new();
    let mut children = Vec::new();
    let mut prepare = Vec::new();
    for f in &fields {
        let id = &f.ident;
        let key = &f.key;
        match f.role {
            Role::Param | Role::Buffer => {
                let kind = if f.role == Role::Param {
                    quote!(::aics_nn::Kind::Param)
                } else {
                    quote!(::aics_nn::Kind::Buffer)
                };
                visit.push(match f.shape {
                    Shape::Option => quote! {
                        if let Some(t) = &self.#id { f(::aics_nn::module::key(prefix, #key), t, #kind); }
                    },
                    _ => quote! { f(::aics_nn::module::key(prefix, #key), &self.#id, #kind); },
                });
            }
            Role::Module => {
                visit.push(each_child(f, quote!(::aics_nn::Module::visit(m, &at, f);)));
                train.push(each_child(
                    f,
                    quote!(let _ = &at; ::aics_nn::Module::set_training(m, training);),
                ));
                rngs.push(each_child(
                    f,
                    quote!(::aics_nn::Module::visit_rngs(m, &at, f);),
                ));
                if transparent {
                    children.push(each_child(f, quote!(f(&at, m);)));
                }
                let id = &f.ident;
                prepare.push(match f.shape {
                    Shape::One => quote! { self.#id.prepare_inference()?; },
                    Shape::Option => quote! {
                        if let Some(m) = &mut self.#id { m.prepare_inference()?; }
                    },
                    Shape::Vec => quote! {
                        for m in self.#id.iter_mut() { m.prepare_inference()?; }
                    },
                });
            }
            Role::Rng => rngs.push(quote! { f(::aics_nn::module::key(prefix, #key), &self.#id); }),
            Role::Training => train.push(quote! {
                self.#id.store(training, ::std::sync::atomic::Ordering::Relaxed);
            }),
        }
    }
    // a module is reachable as `Any` (to fuse layers by type) when it is not generic
    let as_any = if input.generics.params.is_empty() {
        quote! {
            fn as_any_mut(&mut self) -> Option<&mut dyn ::std::any::Any> {
                Some(self)
            }
            fn as_any(&self) -> Option<&dyn ::std::any::Any> {
                Some(self)
            }
        }
    } else {
        quote!()
    };
    // `prefix` is unused by set_training; keep it in scope for the shared child code
    Ok(quote! {
        impl #impl_g ::aics_nn::Fields for #name #ty_g #where_g {
            #[allow(unused_variables)]
            fn visit_fields(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(String, &::aics_tensor::Tensor, ::aics_nn::Kind),
            ) {
                #(#visit)*
            }
            #[allow(unused_variables)]
            fn set_training_fields(&self, training: bool) {
                let prefix = "";
                #(#train)*
            }
            #[allow(unused_variables)]
            fn visit_rngs_fields(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(String, &::std::sync::Mutex<::aics_tensor::Rng>),
            ) {
                #(#rngs)*
            }
            fn type_name_fields(&self) -> String {
                #type_name.to_string()
            }
            fn prepare_inference_fields(&mut self) -> ::aics_nn::Result<()> {
                #[allow(unused_imports)]
                use ::aics_nn::Module as _;
                #(#prepare)*
                Ok(())
            }
            #as_any
            #[allow(unused_variables)]
            fn transparent_children(&self, f: &mut dyn FnMut(&str, &dyn ::aics_nn::Module)) {
                // keys relative to the struct: "" for a flattened field
                let prefix = "";
                #(#children)*
            }
        }
    })
}
