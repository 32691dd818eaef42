//! The AsyncAPI 3.0 document of Conveyor's events: the RabbitMQ server, one channel per event
//! type (its routing key on `conveyor.events`), each message's schema inside its envelope,
//! and which service sends and which receives it.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::catalog::{ENVELOPE_SCHEMA, SCHEMAS};
use crate::embedded_schema;

/// What one service declares it sends and receives.
#[derive(Debug, Clone)]
pub struct ServiceEvents {
    pub service: String,
    pub sends: BTreeSet<String>,
    pub receives: BTreeSet<String>,
}

fn message_key(event_type: &str, version: u32) -> String {
    format!("{event_type}.v{version}")
}

/// The whole document, ready to be written as YAML.
pub fn document(services: &[ServiceEvents]) -> Value {
    let envelope = embedded_schema(ENVELOPE_SCHEMA);
    let mut channels = Map::new();
    let mut messages = Map::new();
    let mut schemas = Map::new();
    let mut operations = Map::new();
    let event_types: BTreeSet<&str> = SCHEMAS.iter().map(|file| file.event_type).collect();
    for event_type in &event_types {
        let versions: Vec<_> = SCHEMAS
            .iter()
            .filter(|file| file.event_type == *event_type)
            .collect();
        let mut channel_messages = Map::new();
        for file in &versions {
            let key = message_key(event_type, file.version);
            // Model generators name a class after a schema's title, so each event version's
            // envelope and data get titles of their own; shared ones fold into one model.
            let model = crate::type_name(event_type, file.version);
            let mut data = embedded_schema(file.text);
            data["title"] = json!(model);
            let mut payload = envelope.clone();
            payload["title"] = json!(format!("{model}Envelope"));
            payload["properties"]["type"] = json!({ "const": event_type });
            payload["properties"]["dataschema"] =
                json!({ "enum": crate::dataschema_forms(event_type, file.version) });
            payload["properties"]["data"] =
                json!({ "$ref": format!("#/components/schemas/{key}") });
            payload
                .as_object_mut()
                .map(|object| object.remove("examples"));
            messages.insert(
                key.clone(),
                json!({
                    "name": model,
                    "title": format!("{event_type} v{}", file.version),
                    "summary": data["description"],
                    "contentType": "application/cloudevents+json",
                    "headers": {
                        "type": "object",
                        "properties": {
                            "traceparent": { "type": "string", "description": "W3C trace context of the producer's span." },
                            "tracestate": { "type": "string" }
                        }
                    },
                    "payload": payload,
                    "bindings": { "amqp": { "messageType": event_type, "bindingVersion": "0.3.0" } },
                }),
            );
            schemas.insert(key.clone(), data);
            channel_messages.insert(
                key.clone(),
                json!({ "$ref": format!("#/components/messages/{key}") }),
            );
        }
        channels.insert(
            (*event_type).to_owned(),
            json!({
                "address": event_type,
                "title": event_type,
                "description": format!("Events of type {event_type}, routed by that key on the conveyor.events topic exchange."),
                "messages": channel_messages,
                "bindings": { "amqp": {
                    "is": "routingKey",
                    "exchange": { "name": "conveyor.events", "type": "topic", "durable": true, "autoDelete": false, "vhost": "/" },
                    "bindingVersion": "0.3.0"
                } },
            }),
        );
        let channel_messages: Vec<Value> = versions
            .iter()
            .map(|file| json!({ "$ref": format!("#/channels/{event_type}/messages/{}", message_key(event_type, file.version)) }))
            .collect();
        for service in services {
            for (action, declared) in [("send", &service.sends), ("receive", &service.receives)] {
                if !declared.contains(*event_type) {
                    continue;
                }
                let mut operation = json!({
                    "action": action,
                    "channel": { "$ref": format!("#/channels/{event_type}") },
                    "messages": channel_messages,
                    "summary": format!("{} {action}s {event_type}.", service.service),
                    "tags": [{ "name": service.service }],
                });
                if action == "receive" {
                    operation["description"] = json!(format!(
                        "Consumed from the quorum queue {}.events, with retries through {}.retry.<delay> and dead letters in {}.dlq.",
                        service.service, service.service, service.service
                    ));
                }
                operations.insert(
                    format!("{}.{action}.{event_type}", service.service),
                    operation,
                );
            }
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Conveyor events",
            "version": "1.0.0",
            "description": "Domain events of the Conveyor services over RabbitMQ. Every message is a CloudEvents 1.0 envelope in structured JSON mode; generated by `conveyor schema asyncapi` from events-schema/ and the services' declarations.",
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "rabbitmq": {
                "host": "localhost:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "RabbitMQ 3.10; the default vhost `/`.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": { "messages": messages, "schemas": schemas },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_version_has_a_message_payload_and_data_named_its_own() {
        let document = document(&[]);
        let mut titles = BTreeSet::new();
        let messages = document["components"]["messages"].as_object().unwrap();
        for (key, message) in messages {
            let name = message["name"].as_str().unwrap();
            let payload = message["payload"]["title"].as_str().unwrap();
            let data_ref = message["payload"]["properties"]["data"]["$ref"]
                .as_str()
                .unwrap();
            let data_key = data_ref.rsplit('/').next().unwrap();
            let data = document["components"]["schemas"][data_key]["title"]
                .as_str()
                .unwrap();
            assert_eq!(data, name, "{key}");
            assert_eq!(payload, format!("{name}Envelope"), "{key}");
            assert!(titles.insert(payload.to_owned()), "{key}: {payload} twice");
            assert!(titles.insert(data.to_owned()), "{key}: {data} twice");
        }
        assert_eq!(messages.len(), SCHEMAS.len());
        assert_eq!(
            messages["order.deadline-passed.v1"]["name"],
            "OrderDeadlinePassedV1"
        );
    }
}
