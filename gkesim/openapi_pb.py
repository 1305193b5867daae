"""The OpenAPI v2 document as kubectl reads it: gnostic's `openapi.v2.Document` protobuf message.

kubectl 1.27 and 1.28 (run by gcloud's kubectl dispatcher for clusters of those versions) fetch `GET /openapi/v2`
with `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf` before `kubectl create` and decode the
body as gnostic's `openapi.v2.Document` (github.com/google/gnostic-models, `openapiv2/OpenAPIv2.proto`, package
`openapi.v2`). The message classes here are built at import time with protobuf's own descriptor pool and message
factory from a `FileDescriptorProto` assembled from the table below: message names, field names, numbers and
types of that schema (proto3), so the wire format is gnostic's. Nothing is generated or compiled.

`document(swagger)` turns a Swagger 2.0 document (a JSON-like dict) into a `Document` message the way gnostic's
compiler does for the parts Kubernetes uses; vendor extensions (`x-...`) carry their value as YAML text in
`Any.yaml`, which is what kube-openapi and kubectl read.
"""

from __future__ import annotations

from typing import Any

import yaml
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "openapi.v2"
FILE_NAME = "openapiv2/OpenAPIv2.proto"

# One message a line: `Name | [oneof] field=number[:type] ...`; `*` marks a repeated field; the type defaults to
# string; a capitalised type is a message of this package; `.google.protobuf.Any` is the well-known Any.
_ITEM_FIELDS = (
    "type=1 format=2 items=3:PrimitivesItems collection_format=4 default=5:Any maximum=6:double "
    "exclusive_maximum=7:bool minimum=8:double exclusive_minimum=9:bool max_length=10:int64 min_length=11:int64 "
    "pattern=12 max_items=13:int64 min_items=14:int64 unique_items=15:bool *enum=16:Any multiple_of=17:double"
)
_NON_BODY_PARAM = (  # header and path parameters; form-data and query ones add allow_empty_value=5 (see below)
    "required=1:bool in=2 description=3 name=4 type=5 format=6 items=7:PrimitivesItems collection_format=8 "
    "default=9:Any maximum=10:double exclusive_maximum=11:bool minimum=12:double exclusive_minimum=13:bool "
    "max_length=14:int64 min_length=15:int64 pattern=16 max_items=17:int64 min_items=18:int64 "
    "unique_items=19:bool *enum=20:Any multiple_of=21:double *vendor_extension=22:NamedAny"
)
_NON_BODY_PARAM_WITH_EMPTY = (
    "required=1:bool in=2 description=3 name=4 allow_empty_value=5:bool type=6 format=7 items=8:PrimitivesItems "
    "collection_format=9 default=10:Any maximum=11:double exclusive_maximum=12:bool minimum=13:double "
    "exclusive_minimum=14:bool max_length=15:int64 min_length=16:int64 pattern=17 max_items=18:int64 "
    "min_items=19:int64 unique_items=20:bool *enum=21:Any multiple_of=22:double *vendor_extension=23:NamedAny"
)
_OAUTH2 = "type=1 flow=2 scopes=3:Oauth2Scopes"
_MESSAGES = f"""
AdditionalPropertiesItem | oneof schema=1:Schema boolean=2:bool
Any | value=1:.google.protobuf.Any yaml=2
ApiKeySecurity | type=1 name=2 in=3 description=4 *vendor_extension=5:NamedAny
BasicAuthenticationSecurity | type=1 description=2 *vendor_extension=3:NamedAny
BodyParameter | description=1 name=2 in=3 required=4:bool schema=5:Schema *vendor_extension=6:NamedAny
Contact | name=1 url=2 email=3 *vendor_extension=4:NamedAny
Default | *additional_properties=1:NamedAny
Definitions | *additional_properties=1:NamedSchema
Document | swagger=1 info=2:Info host=3 base_path=4 *schemes=5 *consumes=6 *produces=7 paths=8:Paths \
definitions=9:Definitions parameters=10:ParameterDefinitions responses=11:ResponseDefinitions \
*security=12:SecurityRequirement security_definitions=13:SecurityDefinitions *tags=14:Tag \
external_docs=15:ExternalDocs *vendor_extension=16:NamedAny
Examples | *additional_properties=1:NamedAny
ExternalDocs | description=1 url=2 *vendor_extension=3:NamedAny
FileSchema | format=1 title=2 description=3 default=4:Any *required=5 type=6 read_only=7:bool \
external_docs=8:ExternalDocs example=9:Any *vendor_extension=10:NamedAny
FormDataParameterSubSchema | {_NON_BODY_PARAM_WITH_EMPTY}
Header | {_ITEM_FIELDS} description=18 *vendor_extension=19:NamedAny
HeaderParameterSubSchema | {_NON_BODY_PARAM}
Headers | *additional_properties=1:NamedHeader
Info | title=1 version=2 description=3 terms_of_service=4 contact=5:Contact license=6:License \
*vendor_extension=7:NamedAny
ItemsItem | *schema=1:Schema
JsonReference | _ref=1 description=2
License | name=1 url=2 *vendor_extension=3:NamedAny
NamedAny | name=1 value=2:Any
NamedHeader | name=1 value=2:Header
NamedParameter | name=1 value=2:Parameter
NamedPathItem | name=1 value=2:PathItem
NamedResponse | name=1 value=2:Response
NamedResponseValue | name=1 value=2:ResponseValue
NamedSchema | name=1 value=2:Schema
NamedSecurityDefinitionsItem | name=1 value=2:SecurityDefinitionsItem
NamedString | name=1 value=2
NamedStringArray | name=1 value=2:StringArray
NonBodyParameter | oneof header_parameter_sub_schema=1:HeaderParameterSubSchema \
form_data_parameter_sub_schema=2:FormDataParameterSubSchema query_parameter_sub_schema=3:QueryParameterSubSchema \
path_parameter_sub_schema=4:PathParameterSubSchema
Oauth2AccessCodeSecurity | {_OAUTH2} authorization_url=4 token_url=5 description=6 *vendor_extension=7:NamedAny
Oauth2ApplicationSecurity | {_OAUTH2} token_url=4 description=5 *vendor_extension=6:NamedAny
Oauth2ImplicitSecurity | {_OAUTH2} authorization_url=4 description=5 *vendor_extension=6:NamedAny
Oauth2PasswordSecurity | {_OAUTH2} token_url=4 description=5 *vendor_extension=6:NamedAny
Oauth2Scopes | *additional_properties=1:NamedString
Operation | *tags=1 summary=2 description=3 external_docs=4:ExternalDocs operation_id=5 *produces=6 *consumes=7 \
*parameters=8:ParametersItem responses=9:Responses *schemes=10 deprecated=11:bool *security=12:SecurityRequirement \
*vendor_extension=13:NamedAny
Parameter | oneof body_parameter=1:BodyParameter non_body_parameter=2:NonBodyParameter
ParameterDefinitions | *additional_properties=1:NamedParameter
ParametersItem | oneof parameter=1:Parameter json_reference=2:JsonReference
PathItem | _ref=1 get=2:Operation put=3:Operation post=4:Operation delete=5:Operation options=6:Operation \
head=7:Operation patch=8:Operation *parameters=9:ParametersItem *vendor_extension=10:NamedAny
PathParameterSubSchema | {_NON_BODY_PARAM}
Paths | *vendor_extension=1:NamedAny *path=2:NamedPathItem
PrimitivesItems | {_ITEM_FIELDS} *vendor_extension=18:NamedAny
Properties | *additional_properties=1:NamedSchema
QueryParameterSubSchema | {_NON_BODY_PARAM_WITH_EMPTY}
Response | description=1 schema=2:SchemaItem headers=3:Headers examples=4:Examples *vendor_extension=5:NamedAny
ResponseDefinitions | *additional_properties=1:NamedResponse
ResponseValue | oneof response=1:Response json_reference=2:JsonReference
Responses | *response_code=1:NamedResponseValue *vendor_extension=2:NamedAny
Schema | _ref=1 format=2 title=3 description=4 default=5:Any multiple_of=6:double maximum=7:double \
exclusive_maximum=8:bool minimum=9:double exclusive_minimum=10:bool max_length=11:int64 min_length=12:int64 \
pattern=13 max_items=14:int64 min_items=15:int64 unique_items=16:bool max_properties=17:int64 \
min_properties=18:int64 *required=19 *enum=20:Any additional_properties=21:AdditionalPropertiesItem \
type=22:TypeItem items=23:ItemsItem *all_of=24:Schema properties=25:Properties discriminator=26 \
read_only=27:bool xml=28:Xml external_docs=29:ExternalDocs example=30:Any *vendor_extension=31:NamedAny
SchemaItem | oneof schema=1:Schema file_schema=2:FileSchema
SecurityDefinitions | *additional_properties=1:NamedSecurityDefinitionsItem
SecurityDefinitionsItem | oneof basic_authentication_security=1:BasicAuthenticationSecurity \
api_key_security=2:ApiKeySecurity oauth2_implicit_security=3:Oauth2ImplicitSecurity \
oauth2_password_security=4:Oauth2PasswordSecurity oauth2_application_security=5:Oauth2ApplicationSecurity \
oauth2_access_code_security=6:Oauth2AccessCodeSecurity
SecurityRequirement | *additional_properties=1:NamedStringArray
StringArray | *value=1
Tag | name=1 description=2 external_docs=3:ExternalDocs *vendor_extension=4:NamedAny
TypeItem | *value=1
VendorExtension | *additional_properties=1:NamedAny
Xml | name=1 namespace=2 prefix=3 attribute=4:bool wrapped=5:bool *vendor_extension=6:NamedAny
"""

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "bool": _F.TYPE_BOOL, "double": _F.TYPE_DOUBLE, "int64": _F.TYPE_INT64}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """The schema as a `FileDescriptorProto` (proto3, package `openapi.v2`)."""
    fdp = descriptor_pb2.FileDescriptorProto(
        name=FILE_NAME, package=PACKAGE, syntax="proto3", dependency=["google/protobuf/any.proto"]
    )
    fdp.options.go_package = "./openapiv2;openapi_v2"
    for line in _MESSAGES.replace("\\\n", "").strip().splitlines():
        name, _, spec = (part.strip() for part in line.partition("|"))
        msg = fdp.message_type.add(name=name)
        tokens = spec.split()
        in_oneof = tokens[:1] == ["oneof"]
        if in_oneof:
            msg.oneof_decl.add(name="oneof")
            tokens = tokens[1:]
        for token in tokens:
            field_name, _, rest = token.partition("=")
            number, _, type_name = rest.partition(":")
            repeated = field_name.startswith("*")
            field_name = field_name.lstrip("*")
            field = msg.field.add(
                name=field_name,
                number=int(number),
                json_name=_camel(field_name),
                label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL,
            )
            type_name = type_name or "string"
            if type_name in _SCALARS:
                field.type = _SCALARS[type_name]
            else:
                field.type = _F.TYPE_MESSAGE
                field.type_name = type_name if type_name.startswith(".") else f".{PACKAGE}.{type_name}"
            if in_oneof:
                field.oneof_index = 0
    return fdp


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    any_file = descriptor_pb2.FileDescriptorProto()
    any_pb2.DESCRIPTOR.CopyToProto(any_file)
    pool.Add(any_file)
    pool.Add(file_descriptor())
    return pool


POOL = _build_pool()


def message_class(name: str) -> Any:
    """The generated class of one message of the package, e.g. `message_class("Document")`."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Document = message_class("Document")
Schema = message_class("Schema")
NamedAny = message_class("NamedAny")


# ----- Swagger 2.0 (a dict) -> openapi.v2.Document --------------------------------------------------------------


def yaml_text(value: Any) -> str:
    """A vendor extension's value as gnostic stores it: YAML text."""
    text = yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1 << 30)
    return text.removesuffix("...\n")


def _extensions(obj: dict[str, Any], target: Any) -> None:
    for key, value in obj.items():
        if key.startswith("x-"):
            target.add(name=key).value.yaml = yaml_text(value)


def _schema(s: dict[str, Any], out: Any) -> Any:
    if "$ref" in s:
        out._ref = s["$ref"]
    for key in ("format", "title", "description", "pattern", "discriminator"):
        if key in s:
            setattr(out, key, s[key])
    if "type" in s:
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        out.type.value.extend(types)
    if "required" in s:
        out.required.extend(s["required"])
    if "enum" in s:
        for value in s["enum"]:
            out.enum.add(yaml=yaml_text(value))
    if "default" in s:
        out.default.yaml = yaml_text(s["default"])
    if "items" in s:
        items = s["items"] if isinstance(s["items"], list) else [s["items"]]
        for item in items:
            _schema(item, out.items.schema.add())
    if "properties" in s:
        for name, prop in s["properties"].items():
            _schema(prop, out.properties.additional_properties.add(name=name).value)
    if "additionalProperties" in s:
        extra = s["additionalProperties"]
        if isinstance(extra, bool):
            out.additional_properties.boolean = extra
        else:
            _schema(extra, out.additional_properties.schema)
    if "allOf" in s:
        for sub in s["allOf"]:
            _schema(sub, out.all_of.add())
    for key in ("uniqueItems", "readOnly"):
        if key in s:
            setattr(out, {"uniqueItems": "unique_items", "readOnly": "read_only"}[key], s[key])
    _extensions(s, out.vendor_extension)
    return out


def _parameter(p: dict[str, Any], out: Any) -> None:
    if "$ref" in p:
        out.json_reference._ref = p["$ref"]
        return
    if p.get("in") == "body":
        body = out.parameter.body_parameter
        for key in ("name", "in", "description", "required"):
            if key in p:
                setattr(body, key, p[key])
        if "schema" in p:
            _schema(p["schema"], body.schema)
        _extensions(p, body.vendor_extension)
        return
    where = {
        "query": "query_parameter_sub_schema",
        "path": "path_parameter_sub_schema",
        "header": "header_parameter_sub_schema",
        "formData": "form_data_parameter_sub_schema",
    }[p["in"]]
    sub = getattr(out.parameter.non_body_parameter, where)
    for key in ("name", "in", "description", "required", "type", "format", "pattern"):
        if key in p:
            setattr(sub, key, p[key])
    if "uniqueItems" in p:
        sub.unique_items = p["uniqueItems"]
    if "collectionFormat" in p:
        sub.collection_format = p["collectionFormat"]
    if "allowEmptyValue" in p and where in ("query_parameter_sub_schema", "form_data_parameter_sub_schema"):
        sub.allow_empty_value = p["allowEmptyValue"]
    _extensions(p, sub.vendor_extension)


def _operation(op: dict[str, Any], out: Any) -> None:
    for key in ("summary", "description"):
        if key in op:
            setattr(out, key, op[key])
    if "operationId" in op:
        out.operation_id = op["operationId"]
    for key in ("tags", "consumes", "produces", "schemes"):
        getattr(out, key).extend(op.get(key, []))
    for p in op.get("parameters", []):
        _parameter(p, out.parameters.add())
    for code, response in op.get("responses", {}).items():
        value = out.responses.response_code.add(name=str(code)).value
        if "$ref" in response:
            value.json_reference._ref = response["$ref"]
            continue
        value.response.description = response.get("description", "")
        if "schema" in response:
            _schema(response["schema"], value.response.schema.schema)
    _extensions(op, out.vendor_extension)


def document(swagger: dict[str, Any]) -> Any:
    """A Swagger 2.0 document as gnostic's `openapi.v2.Document`."""
    doc = Document(swagger=swagger.get("swagger", "2.0"))
    info = swagger.get("info", {})
    doc.info.title = info.get("title", "")
    doc.info.version = info.get("version", "")
    for key in ("schemes", "consumes", "produces"):
        getattr(doc, key).extend(swagger.get(key, []))
    for path, item in swagger.get("paths", {}).items():
        value = doc.paths.path.add(name=path).value
        for method in ("get", "put", "post", "delete", "options", "head", "patch"):
            if method in item:
                _operation(item[method], getattr(value, method))
        for p in item.get("parameters", []):
            _parameter(p, value.parameters.add())
        _extensions(item, value.vendor_extension)
    for name, schema in swagger.get("definitions", {}).items():
        _schema(schema, doc.definitions.additional_properties.add(name=name).value)
    for name, definition in swagger.get("securityDefinitions", {}).items():
        item = doc.security_definitions.additional_properties.add(name=name).value
        if definition.get("type") == "apiKey":
            for key in ("type", "name", "in", "description"):
                if key in definition:
                    setattr(item.api_key_security, key, definition[key])
        elif definition.get("type") == "basic":
            item.basic_authentication_security.type = "basic"
    for requirement in swagger.get("security", []):
        req = doc.security.add()
        for name, scopes in requirement.items():
            req.additional_properties.add(name=name).value.value.extend(scopes)
    _extensions(swagger, doc.vendor_extension)
    return doc
